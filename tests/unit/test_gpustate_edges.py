"""GPU-state edges `make mutate` found unguarded (docs/mutation.md): the device's own limits are allowed values, a
memory-clock lock narrows the SM clocks checked, persistence mode is put back as it was, every GPU and every journal
is handled even after one fails, the applied settings name each GPU, and a journal's writer is told from a new
process that reused its pid."""

from __future__ import annotations

import json
import os

import pytest
from fakes import FakeGpu, fake_gpu_opener
from lem_runner.contract import GpuConfig
from llenergymeasure.errors import ConfigError
from llenergymeasure.gpustate import operating_point, recover_stale
from llenergymeasure.gpustate.apply import restore
from llenergymeasure.gpustate.journal import host_journals, is_alive, new_journal, process_start, write_journal


def _hold(tmp_path, gpu, ids=("0",), notes=None, **fake):
    return operating_point(gpu, list(ids), fake_gpu_opener(tmp_path / "state", **fake),
                           notify=(notes.append if notes is not None else lambda _l: None), directory=tmp_path / "locks")


def _state(tmp_path, gpu="0") -> dict:
    return json.loads((tmp_path / "state" / f"gpu-{gpu}.json").read_text())


@pytest.mark.parametrize("gpu", [GpuConfig(power_limit_w=200), GpuConfig(power_limit_w=700),
                                 GpuConfig(locked_sm_clock_mhz=345), GpuConfig(locked_sm_clock_mhz=1980),
                                 GpuConfig(locked_sm_clock_mhz=(345, 1980)),
                                 GpuConfig(locked_memory_clock_mhz=(2619, 2619))])
def test_the_devices_own_limits_are_allowed(tmp_path, gpu):
    with _hold(tmp_path, gpu) as settings:
        assert len(settings) == 1


def test_sm_clocks_are_checked_against_those_of_the_locked_memory_clock(tmp_path):
    """Two memory clocks, each with its own SM clocks (nvmlDeviceGetSupportedGraphicsClocks per memory clock)."""
    class TwoMemoryClocks(FakeGpu):
        def supported_sm_clocks_mhz(self, memory_clock_mhz):
            return [300, 400] if memory_clock_mhz == 800 else [900, 1000] if memory_clock_mhz == 2619 else []

    opener = lambda g: TwoMemoryClocks(tmp_path / "state" / f"gpu-{g}.json", g, memory_clocks=(800, 2619))  # noqa: E731
    ok = GpuConfig(locked_memory_clock_mhz=2619, locked_sm_clock_mhz=1000)
    with operating_point(ok, ["0"], opener, lambda _l: None, tmp_path / "locks") as (s,):
        assert s.requested_memory_clock_mhz == (2619, 2619) and s.memory_clock_after_lock_mhz == 2619
    low = GpuConfig(locked_memory_clock_mhz=2619, locked_sm_clock_mhz=400)  # supported only under 800 MHz memory
    with pytest.raises(ConfigError, match=r"gpu.locked_sm_clock_mhz: 400 MHz is outside what GPU 0 supports "
                                          r"\(900–1000 MHz\)"), operating_point(low, ["0"], opener, None,
                                                                               tmp_path / "locks"):
        pytest.fail("the block must not run")
    with pytest.raises(ConfigError, match=r"gpu.locked_memory_clock_mhz: 800–3000 MHz is outside what GPU 0 "
                                          r"supports \(800–2619 MHz\)"), \
            operating_point(GpuConfig(locked_memory_clock_mhz=(800, 3000)), ["0"], opener, None, tmp_path / "locks"):
        pytest.fail("the block must not run")


@pytest.mark.parametrize("before", [True, False])
def test_persistence_mode_is_put_back_as_it_was(tmp_path, before):
    FakeGpu(tmp_path / "state" / "gpu-0.json").set_persistence_mode(before)
    notes: list[str] = []
    with _hold(tmp_path, GpuConfig(persistence_mode=not before), notes=notes) as (s,):
        assert _state(tmp_path)["persistence"] is (not before)
        assert (s.requested_persistence_mode, s.applied_persistence_mode, s.previous_persistence_mode) == \
            (not before, not before, before)
    assert _state(tmp_path)["persistence"] is before


def test_restore_says_what_it_put_back():
    class Dev:
        def __init__(self):
            self.calls = []

        def __getattr__(self, name):
            return lambda *a: self.calls.append((name, *a))

    journal = new_journal("0", "GPU-x", ["persistence_mode", "power_limit", "memory_clocks", "sm_clocks"], 650.0,
                          False)
    dev = Dev()
    assert restore(dev, journal) == ["SM clock lock reset", "memory clock lock reset", "power limit back to 650 W",
                                     "persistence mode back off"]
    assert dev.calls == [("reset_sm_clocks",), ("reset_memory_clocks",), ("set_power_limit_w", 650.0),
                         ("set_persistence_mode", False)]


def test_settings_name_each_gpu_by_id_and_uuid(tmp_path):
    with _hold(tmp_path, GpuConfig(power_limit_w=400, locked_memory_clock_mhz=2619), ids=("0", "1")) as settings:
        assert [(s.gpu, s.uuid) for s in settings] == [("0", "GPU-fake-0"), ("1", "GPU-fake-1")]
        assert [s.requested_memory_clock_mhz for s in settings] == [(2619, 2619)] * 2


def test_a_failed_restore_on_one_gpu_still_restores_the_others(tmp_path):
    notes: list[str] = []

    def opener(g):
        return FakeGpu(tmp_path / "state" / f"gpu-{g}.json", g, fail_on="reset_sm_clocks" if g == "1" else None)

    with operating_point(GpuConfig(locked_sm_clock_mhz=1200), ["0", "1", "2"], opener, notes.append,
                         tmp_path / "locks"):
        pass
    assert [_state(tmp_path, g)["sm_lock"] for g in "012"] == [None, [1200, 1200], None]
    assert len(notes) == 1 and notes[0].startswith("GPU 1: could not restore")
    assert [p.name.rsplit("-", 1)[1] for p in host_journals(tmp_path / "locks")] == ["1.json"]


def _dead_journal(tmp_path, gpu: str, pid: int):
    journal = new_journal(gpu, f"GPU-fake-{gpu}", ["power_limit"], 700.0, None)
    journal.pid, journal.pid_start = pid, None
    write_journal(journal, tmp_path / "locks")
    FakeGpu(tmp_path / "state" / f"gpu-{gpu}.json", gpu).set_power_limit_w(250)
    return journal


def test_every_dead_journal_is_restored_and_a_live_one_kept(tmp_path):
    _dead_journal(tmp_path, "0", 2**22 + 1)
    live = new_journal("1", "GPU-fake-1", ["power_limit"], 700.0, None)
    live.pid = os.getppid()  # alive, and not this process
    live.pid_start = process_start(live.pid)
    write_journal(live, tmp_path / "locks")
    _dead_journal(tmp_path, "2", 2**22 + 2)
    notes: list[str] = []
    kept = recover_stale(["0", "1", "2"], fake_gpu_opener(tmp_path / "state"), notes.append, tmp_path / "locks")
    assert [j.gpu for j in kept] == ["1"]
    assert [n.split(":")[0] for n in notes] == ["GPU 0", "GPU 2"]
    assert _state(tmp_path, "0")["power_limit_w"] == 700.0 and _state(tmp_path, "2")["power_limit_w"] == 700.0


def test_a_writer_is_alive_only_while_its_pid_runs_the_process_it_started():
    me = os.getpid()
    start = process_start(me)
    assert start is not None and start.isdigit()
    assert is_alive(me, start) and is_alive(me, None)
    assert not is_alive(me, str(int(start) + 1))  # the pid now belongs to a process started later
    assert not is_alive(2**22 + 3, None)


def test_process_start_reads_field_22_even_when_the_name_holds_a_paren(tmp_path):
    """/proc/<pid>/stat is 'pid (comm) state ...' and comm may hold ')' and spaces: a process named 'we) ird'
    started after this one has a later start time (counting fields after the first ')' reads field 21, always 0)."""
    import shutil
    import subprocess

    weird = tmp_path / "we) ird"
    shutil.copy(shutil.which("sleep"), weird)
    child = subprocess.Popen([str(weird), "30"])
    try:
        for _ in range(100):  # until exec has renamed it
            if "we) ird" in open(f"/proc/{child.pid}/stat").read():
                break
        started = process_start(child.pid)
        assert started is not None and int(started) >= int(process_start(os.getpid())) > 0
        assert is_alive(child.pid, started)
    finally:
        child.kill()
        child.wait()


def test_the_fake_gpu_keeps_the_gpu_control_contract(tmp_path):
    """The same contract the real NvmlGpu is held to on the simulated GPU (tests/unit/test_gpustate_nvml.py)."""
    from device_contract import assert_gpu_control_contract

    assert_gpu_control_contract(FakeGpu(tmp_path / "state" / "gpu-0.json"))
