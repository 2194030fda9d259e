"""What every CounterDevice must do, asserted the same way for the fake (unit tests) and the real NVML GPU (gpu tests),
so the fake cannot drift from the component it stands in for."""

from __future__ import annotations

from collections.abc import Callable

from lem_runner.contract.energy import DeviceIdleState
from lem_runner.energy.device import CounterDevice, DeviceSample


def assert_counter_device_contract(dev, let_time_pass: Callable[[], None]) -> None:
    assert isinstance(dev, CounterDevice)
    assert isinstance(dev.id, str) and dev.id
    assert dev.uuid is None or isinstance(dev.uuid, str)
    first = dev.energy_mj()
    let_time_pass()
    second = dev.energy_mj()
    assert isinstance(first, (int, float)) and second >= first, "the counter is cumulative"
    assert second > first, "a device drawing power must tick over the time let pass"
    sample = dev.sample()
    assert isinstance(sample, DeviceSample)
    if sample.power_w is not None:
        assert 0 <= sample.power_w < 2000
    if sample.temperature_c is not None:
        assert -20 < sample.temperature_c < 130
    if sample.clock_event_reasons is not None:
        assert isinstance(sample.clock_event_reasons, int) and sample.clock_event_reasons >= 0
    others = dev.other_processes()
    assert others is None or all(isinstance(p, int) for p in others)
    assert dev.persistence_mode() in (True, False, None)
    state = dev.idle_state()
    assert isinstance(state, DeviceIdleState) and state.device == dev.id and state.uuid == dev.uuid
    assert state.persistence_mode == dev.persistence_mode()
    if state.memory_used_mib is not None:
        assert state.memory_used_mib >= 0
    if state.power_limit_w is not None:
        assert 0 < state.power_limit_w < 2000


def assert_gpu_control_contract(dev) -> None:
    """What every GpuControl (controller/llenergymeasure/gpustate) must do, for the FakeGpu at the seam and the real
    NvmlGpu (on the simulated GPU in unit tests, on a real one in gpu tests): watts and MHz in, the same read back,
    and every change undoable. Leaves the device as it found it."""
    from llenergymeasure.gpustate.device import GpuControl

    assert isinstance(dev, GpuControl)
    assert isinstance(dev.id, str) and dev.id and (dev.uuid is None or isinstance(dev.uuid, str))
    lo, hi = dev.power_limit_range_w()
    before = dev.power_limit_w()
    assert 0 < lo <= before <= hi < 2000, (lo, before, hi)
    dev.set_power_limit_w(lo)
    assert dev.power_limit_w() == lo
    dev.set_power_limit_w(before)
    assert dev.power_limit_w() == before
    mems = dev.supported_memory_clocks_mhz()
    assert mems and all(isinstance(m, int) and m > 0 for m in mems)
    sms = dev.supported_sm_clocks_mhz(max(mems))
    assert sms and all(isinstance(c, int) and c > 0 for c in sms)
    dev.lock_sm_clocks(min(sms), min(sms))
    dev.reset_sm_clocks()
    dev.lock_memory_clocks(max(mems), max(mems))
    dev.reset_memory_clocks()
    persistence = dev.persistence_mode()
    assert persistence in (True, False)
    dev.set_persistence_mode(not persistence)
    assert dev.persistence_mode() is (not persistence)
    dev.set_persistence_mode(persistence)
    assert dev.persistence_mode() is persistence
    for clock in (dev.sm_clock_mhz(), dev.memory_clock_mhz()):
        assert clock is None or (isinstance(clock, int) and clock > 0)
