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
