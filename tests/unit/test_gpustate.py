"""The GPU operating point at the NVML seam (FakeGpu): validation against the device before any change, apply, read
back, restore on success, failure and refusal, and the restore journal."""

from __future__ import annotations

import json

import pytest
from fakes import FakeGpu, fake_gpu_opener
from lem_runner.contract import GpuConfig
from llenergymeasure.errors import ConfigError, SetupError
from llenergymeasure.gpustate import operating_point, recover_stale
from llenergymeasure.gpustate.journal import host_journals, new_journal, write_journal

DEFAULT = {"power_limit_w": 700.0, "sm_lock": None, "mem_lock": None, "persistence": False}


def _state(tmp_path, gpu="0") -> dict:
    s = json.loads((tmp_path / "state" / f"gpu-{gpu}.json").read_text())
    return {k: s[k] for k in DEFAULT}


def _hold(tmp_path, gpu: GpuConfig, ids=("0",), notes=None, **fake):
    return operating_point(gpu, list(ids), fake_gpu_opener(tmp_path / "state", **fake),
                           notify=(notes.append if notes is not None else lambda _l: None),
                           directory=tmp_path / "locks")


@pytest.mark.parametrize("gpu, message", [
    (GpuConfig(power_limit_w=800), "gpu.power_limit_w: 800 W is outside what GPU 0 allows (200–700 W)"),
    (GpuConfig(power_limit_w=150), "gpu.power_limit_w: 150 W is outside what GPU 0 allows (200–700 W)"),
    (GpuConfig(locked_sm_clock_mhz=2100), "gpu.locked_sm_clock_mhz: 2100 MHz is outside what GPU 0 supports "
                                          "(345–1980 MHz)"),
    (GpuConfig(locked_sm_clock_mhz=(300, 1000)), "gpu.locked_sm_clock_mhz: 300–1000 MHz is outside"),
    (GpuConfig(locked_memory_clock_mhz=1593), "gpu.locked_memory_clock_mhz: 1593 MHz is outside what GPU 0 "
                                              "supports (2619 MHz)"),
    # a good value on one field does not get applied when another is bad: validation comes first
    (GpuConfig(power_limit_w=300, locked_sm_clock_mhz=5000), "gpu.locked_sm_clock_mhz: 5000 MHz"),
])
def test_values_are_checked_against_the_device_before_anything_changes(tmp_path, gpu, message):
    with pytest.raises(ConfigError) as err, _hold(tmp_path, gpu):
        pytest.fail("the block must not run")
    assert message in str(err.value) and err.value.exit_code == 2
    assert _state(tmp_path) == DEFAULT
    assert host_journals(tmp_path / "locks") == []


def test_apply_read_back_and_restore_on_success(tmp_path):
    gpu = GpuConfig(power_limit_w=300, locked_sm_clock_mhz=1200, locked_memory_clock_mhz=2619, persistence_mode=True)
    with _hold(tmp_path, gpu) as settings:
        assert _state(tmp_path) == {"power_limit_w": 300.0, "sm_lock": [1200, 1200], "mem_lock": [2619, 2619],
                                    "persistence": True}
        (journal,) = host_journals(tmp_path / "locks")
        written = json.loads(journal.read_text())
        assert written["previous_power_limit_w"] == 700.0 and written["previous_persistence_mode"] is False
        assert written["changes"] == ["persistence_mode", "power_limit", "memory_clocks", "sm_clocks"]
    (s,) = settings
    assert (s.requested_power_limit_w, s.applied_power_limit_w, s.previous_power_limit_w) == (300, 300, 700)
    assert s.requested_sm_clock_mhz == (1200, 1200) and s.sm_clock_after_lock_mhz == 1200
    assert s.applied_persistence_mode is True and s.previous_persistence_mode is False
    assert _state(tmp_path) == DEFAULT
    assert host_journals(tmp_path / "locks") == []


def test_restore_when_the_run_fails(tmp_path):
    with pytest.raises(RuntimeError, match="runner died"), _hold(tmp_path, GpuConfig(power_limit_w=250,
                                                                                   locked_sm_clock_mhz=(900, 1400))):
        assert _state(tmp_path)["sm_lock"] == [900, 1400]
        raise RuntimeError("runner died")
    assert _state(tmp_path) == DEFAULT and host_journals(tmp_path / "locks") == []


def test_restore_on_keyboard_interrupt(tmp_path):
    with pytest.raises(KeyboardInterrupt), _hold(tmp_path, GpuConfig(power_limit_w=400)):
        raise KeyboardInterrupt
    assert _state(tmp_path) == DEFAULT and host_journals(tmp_path / "locks") == []


def test_no_permission_is_one_line_exit_3_and_nothing_changed(tmp_path):
    with pytest.raises(SetupError) as err, _hold(tmp_path, GpuConfig(power_limit_w=300), permission=False):
        pytest.fail("the block must not run")
    msg = str(err.value)
    assert err.value.exit_code == 3 and "\n" not in msg
    assert msg.startswith("gpu.power_limit_w: NVML refused the change") and "Insufficient Permissions" in msg
    assert "root" in msg and msg.endswith("nothing was changed")
    assert _state(tmp_path) == DEFAULT and host_journals(tmp_path / "locks") == []


def test_a_change_refused_midway_undoes_the_earlier_ones(tmp_path):
    gpu = GpuConfig(power_limit_w=300, locked_sm_clock_mhz=1200)
    with pytest.raises(SetupError, match="gpu.locked_sm_clock_mhz: NVML refused") as err, \
            _hold(tmp_path, gpu, fail_on="lock_sm_clocks"):
        pytest.fail("the block must not run")
    assert "nothing was changed" in str(err.value)
    state = json.loads((tmp_path / "state" / "gpu-0.json").read_text())
    assert state["calls"] == ["set_power_limit_w", "set_power_limit_w"]  # set, then put back
    assert _state(tmp_path) == DEFAULT and host_journals(tmp_path / "locks") == []


def test_a_restore_that_fails_keeps_the_journal_and_says_so(tmp_path):
    notes: list[str] = []
    with _hold(tmp_path, GpuConfig(locked_sm_clock_mhz=1200), notes=notes, fail_on="reset_sm_clocks"):
        pass
    assert _state(tmp_path)["sm_lock"] == [1200, 1200]
    assert len(host_journals(tmp_path / "locks")) == 1
    assert "could not restore" in notes[0] and "lem doctor --restore-gpu" in notes[0]
    # the next run on that GPU (the reset works again) restores it from the journal first
    notes.clear()
    with _hold(tmp_path, GpuConfig(), notes=notes):
        assert _state(tmp_path) == DEFAULT
    assert host_journals(tmp_path / "locks") == []


def test_nothing_requested_touches_nothing(tmp_path):
    with _hold(tmp_path, GpuConfig()) as settings:
        assert settings == []
    assert not (tmp_path / "state").exists()  # the device was never opened


def test_every_gpu_of_a_multi_gpu_run_is_set_and_restored(tmp_path):
    with _hold(tmp_path, GpuConfig(power_limit_w=500), ids=("0", "1")) as settings:
        assert [s.gpu for s in settings] == ["0", "1"]
        assert _state(tmp_path, "0")["power_limit_w"] == 500 and _state(tmp_path, "1")["power_limit_w"] == 500
        assert len(host_journals(tmp_path / "locks")) == 2
    assert _state(tmp_path, "0") == DEFAULT and _state(tmp_path, "1") == DEFAULT


def test_a_journal_of_a_dead_writer_is_restored_and_reported(tmp_path):
    gpu = FakeGpu(tmp_path / "state" / "gpu-0.json")
    journal = new_journal("0", gpu.uuid, ["power_limit", "sm_clocks"], 700.0, None)
    journal.pid, journal.pid_start = 2**22 + 12345, None  # above any pid_max: no such process
    write_journal(journal, tmp_path / "locks")
    gpu.set_power_limit_w(250)
    gpu.lock_sm_clocks(800, 800)
    notes: list[str] = []
    assert recover_stale(["0"], fake_gpu_opener(tmp_path / "state"), notes.append, tmp_path / "locks") == []
    assert _state(tmp_path) == DEFAULT and host_journals(tmp_path / "locks") == []
    assert notes == [f"GPU 0: restored from the journal left by {journal.describe()}, which ended without restoring "
                     "it: SM clock lock reset, power limit back to 700 W"]


def test_config_rejects_bad_gpu_values():
    with pytest.raises(ValueError, match="min <= max"):
        GpuConfig(locked_sm_clock_mhz=(1500, 1000))
    with pytest.raises(ValueError):
        GpuConfig(power_limit_w=-5)
    from lem_runner.contract import ExperimentConfig

    with pytest.raises(ValueError, match="gpu: a power limit.*device is 'cpu'"):
        ExperimentConfig(device="cpu", gpu={"power_limit_w": 300})
    assert ExperimentConfig(gpu={"locked_sm_clock_mhz": [900, 1200]}).gpu.locked_sm_clock_mhz == (900, 1200)
