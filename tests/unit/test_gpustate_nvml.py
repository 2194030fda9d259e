"""The controller's real NVML GPU control (gpustate.NvmlGpu) on the simulated device, in this process: the real
pynvml with its units (milliwatts, MHz) and NVML_ERROR_NO_PERMISSION, only the C library replaced. What the "GPU"
holds is read back from the simulator's state file, which outlives the process as a real GPU's settings do.

The truths come from the scenario, in watts as a user writes them: a default limit of 700 W within 200–700 W, SM
clocks 345–1980 MHz in 15 MHz steps under one memory clock of 2619 MHz."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lem_runner.contract import GpuConfig
from llenergymeasure.errors import ConfigError, SetupError
from llenergymeasure.gpustate import GpuStateError, NvmlGpu, operating_point
from llenergymeasure.gpustate.journal import host_journals

simnvml = pytest.importorskip("lem_runner.contract.nvml", reason="the simulated NVML device (sim-core) is not here")

UUIDS = ["GPU-5a1e0000-0000-4000-8000-00000000000a", "GPU-5a1e0000-0000-4000-8000-00000000000b"]
SM_CLOCKS = list(range(345, 1981, 15))


def write_scenario(folder: Path, root: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gpus.json"
    device = {"power": 90.0, "power_limit_w": {"default": 700, "min": 200, "max": 700},
              "memory_clocks_mhz": [2619], "sm_clocks_mhz": SM_CLOCKS}
    path.write_text(json.dumps({"root": root, "devices": [
        {**device, "uuid": UUIDS[0], "pci_bus_id": "00000000:1B:00.0"},
        {**device, "uuid": UUIDS[1], "pci_bus_id": "00000000:3D:00.0"}]}))
    return path


@pytest.fixture
def sim(tmp_path, monkeypatch):
    """The switch set for this test (the environment variable lem reads), and a reader of the device's state as a
    fresh process sees it."""
    path = write_scenario(tmp_path / "sim")
    monkeypatch.setenv(simnvml.SIMULATED_ENV, str(path))
    return path


def _gpu(entry: str = "0") -> NvmlGpu:
    return NvmlGpu(entry, simnvml.init())


def test_limits_are_read_in_watts_from_nvmls_milliwatts(sim):
    dev = _gpu("0")
    assert dev.uuid == UUIDS[0]
    assert dev.power_limit_w() == 700.0
    assert dev.power_limit_range_w() == (200.0, 700.0)
    assert dev.supported_memory_clocks_mhz() == [2619]
    assert sorted(dev.supported_sm_clocks_mhz(2619)) == SM_CLOCKS


def test_a_gpu_opened_by_uuid_is_that_gpu(sim):
    assert _gpu(UUIDS[1]).uuid == UUIDS[1]
    assert _gpu("1").uuid == UUIDS[1]
    with pytest.raises(GpuStateError, match="cannot open GPU 7"):
        _gpu("7")


def test_a_power_limit_set_in_watts_reaches_the_device_in_milliwatts_and_persists(sim):
    dev = _gpu("1")
    dev.set_power_limit_w(299.6)  # NVML takes whole milliwatts
    assert dev.power_limit_w() == 299.6
    assert _gpu("1").power_limit_w() == 299.6  # a new handle, as another process would open it
    assert _gpu("0").power_limit_w() == 700.0  # the other GPU is untouched
    dev.set_power_limit_w(700.0)
    assert _gpu("1").power_limit_w() == 700.0


def test_clock_locks_and_persistence_are_set_and_reset(sim):
    dev = _gpu("0")
    dev.lock_sm_clocks(1200, 1200)
    dev.lock_memory_clocks(2619, 2619)
    dev.set_persistence_mode(False)
    assert dev.persistence_mode() is False
    dev.reset_sm_clocks()
    dev.reset_memory_clocks()
    dev.set_persistence_mode(True)
    assert dev.persistence_mode() is True


def test_without_root_every_change_is_refused_as_no_permission_and_nothing_changes(tmp_path, monkeypatch):
    monkeypatch.setenv(simnvml.SIMULATED_ENV, str(write_scenario(tmp_path / "user", root=False)))
    dev = _gpu("0")
    for change in (lambda: dev.set_power_limit_w(300.0), lambda: dev.lock_sm_clocks(1200, 1200),
                   lambda: dev.set_persistence_mode(False), dev.reset_sm_clocks):
        with pytest.raises(GpuStateError) as info:
            change()
        assert info.value.permission
    assert dev.power_limit_w() == 700.0 and dev.persistence_mode() is True


def test_the_operating_point_is_applied_read_back_and_restored_on_the_simulated_gpu(sim, tmp_path):
    gpu = GpuConfig(power_limit_w=350, locked_sm_clock_mhz=1410)
    locks = tmp_path / "locks"
    with operating_point(gpu, ["0", "1"], directory=locks, notify=lambda _l: None) as settings:
        assert [s.applied_power_limit_w for s in settings] == [350.0, 350.0]
        assert [s.previous_power_limit_w for s in settings] == [700.0, 700.0]
        assert [s.requested_sm_clock_mhz for s in settings] == [(1410, 1410), (1410, 1410)]
        assert [_gpu(g).power_limit_w() for g in ("0", "1")] == [350.0, 350.0]
        assert len(host_journals(locks)) == 2
    assert [_gpu(g).power_limit_w() for g in ("0", "1")] == [700.0, 700.0]
    assert host_journals(locks) == []


def test_out_of_range_values_are_refused_before_anything_changes(sim, tmp_path):
    with pytest.raises(ConfigError, match=r"gpu.power_limit_w: 800 W is outside what GPU 0 allows \(200–700 W\)"), \
            operating_point(GpuConfig(power_limit_w=800), ["0"], directory=tmp_path / "locks"):
        pytest.fail("the block must not run")
    with pytest.raises(ConfigError, match=r"gpu.locked_sm_clock_mhz: 2100 MHz is outside .* \(345–1980 MHz\)"), \
            operating_point(GpuConfig(locked_sm_clock_mhz=2100), ["0"], directory=tmp_path / "locks"):
        pytest.fail("the block must not run")
    assert _gpu("0").power_limit_w() == 700.0 and host_journals(tmp_path / "locks") == []


def test_no_permission_stops_with_one_setup_error_and_nothing_changed(tmp_path, monkeypatch):
    monkeypatch.setenv(simnvml.SIMULATED_ENV, str(write_scenario(tmp_path / "user", root=False)))
    with pytest.raises(SetupError) as info, \
            operating_point(GpuConfig(power_limit_w=300), ["0"], directory=tmp_path / "locks"):
        pytest.fail("the block must not run")
    assert str(info.value).startswith("gpu.power_limit_w: NVML refused the change (")
    assert "need root" in str(info.value) and str(info.value).endswith("nothing was changed")
    assert _gpu("0").power_limit_w() == 700.0 and host_journals(tmp_path / "locks") == []


def test_the_real_nvml_gpu_keeps_the_gpu_control_contract(sim):
    from device_contract import assert_gpu_control_contract

    assert_gpu_control_contract(_gpu("1"))
