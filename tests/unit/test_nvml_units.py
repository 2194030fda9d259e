"""The runner's NVML device (lem_runner.energy.nvml) on the simulated GPU, in this process: every unit NVML reports
arrives in lem's units — milliwatts as watts (instantaneous and averaged power, power limits), bytes as MiB, the
millijoule counter as joules — checked against the scenario's own numbers, which the test writes in watts, MiB and
seconds. `make mutate` found these conversions unguarded; a wrong one here is a wrong energy figure."""

from __future__ import annotations

import time

import pytest
from lem_runner.contract import nvml
from lem_runner.energy.nvml import NvmlDevice, NvmlEnergySource
from simgpu import UUIDS, sim_env, three_gpus, write_scenario

POWER_W = (95.0, 310.0, 180.0)  # A, B, C in NVML (PCI) order, as tests/simgpu.py scripts them


@pytest.fixture
def sim(tmp_path, monkeypatch):
    def make(**top):
        doc = three_gpus(**top)
        for dev in doc["devices"]:
            dev |= {"memory_used_mib": 1536.0, "power_limit_w": {"default": 650, "min": 200, "max": 700}}
        path = write_scenario(tmp_path / "sim", doc)
        for k, v in sim_env(path).items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        return path
    return make


@pytest.mark.parametrize("instant", [True, False], ids=["instant", "averaged"])
def test_power_and_limits_arrive_in_watts_and_memory_in_mib(sim, instant):
    sim(instant_power=instant)
    dev = NvmlDevice(nvml.init(), "1")
    assert dev.uuid == UUIDS[1] and dev.power_source == ("instant" if instant else "averaged")
    s = dev.sample()
    assert s.power_w == pytest.approx(POWER_W[1], rel=1e-6)
    assert s.power_limit_w == 650.0
    assert s.memory_used_mib == pytest.approx(1536.0)
    state = dev.idle_state()
    assert (state.device, state.uuid) == ("1", UUIDS[1])
    assert state.power_limit_w == 650.0 and state.memory_used_mib == pytest.approx(1536.0)
    assert state.persistence_mode is True


def test_the_counter_is_millijoules_and_the_window_energy_joules(sim):
    """Constant 310 W over a ~1.5 s window: the counter moves 310 J/s in mJ steps every 100 ms, so the window's
    energy is 310 W x its length within two counter updates."""
    sim()
    source = NvmlEnergySource([1], sample_hz=10.0)
    assert source.is_available(), source.unavailable_reason
    assert source.name == nvml.SIMULATED_SOURCE and source.method.startswith("SIMULATED device, not a measurement")
    (dev,) = source.devices
    a = dev.energy_mj()
    time.sleep(0.55)
    b = dev.energy_mj()
    assert (b - a) == pytest.approx(POWER_W[1] * 0.55 * 1000, abs=POWER_W[1] * 0.2 * 1000)  # mJ, two updates
    source.start_tracking()
    time.sleep(1.5)
    reading = source.stop_tracking()
    assert reading.total_j == pytest.approx(POWER_W[1] * reading.duration_s, abs=POWER_W[1] * 0.2)
    assert 1.4 <= reading.duration_s <= 3.0
    powers = [r.sample.power_w for r in reading.samples if r.sample.power_w is not None]
    assert powers and all(p == pytest.approx(POWER_W[1], rel=1e-6) for p in powers)


def test_cuda_visible_devices_entries_name_the_nvml_devices(sim, monkeypatch):
    sim()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"2,{UUIDS[0]}")
    source = NvmlEnergySource([0, 1])
    assert source.is_available(), source.unavailable_reason
    assert [d.uuid for d in source.devices] == [UUIDS[2], UUIDS[0]]
    assert [d.sample().power_w for d in source.devices] == pytest.approx([POWER_W[2], POWER_W[0]])
    hidden = NvmlEnergySource([2])
    assert not hidden.is_available()
    assert hidden.unavailable_reason == (f"NVML energy counter not readable: device 2 is not visible "
                                         f"(CUDA_VISIBLE_DEVICES=2,{UUIDS[0]})") and hidden.devices == []


def test_a_device_nvml_does_not_have_is_unavailable_with_the_reason(sim):
    sim()
    source = NvmlEnergySource([5])
    assert not source.is_available() and source.devices == []
    assert source.unavailable_reason.startswith("NVML energy counter not readable: ")
    with pytest.raises(RuntimeError, match="NVML energy counter not readable"):
        source.start_tracking()
