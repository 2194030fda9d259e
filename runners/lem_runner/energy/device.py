"""The CounterDevice protocol: one thing with a cumulative energy counter (a GPU through NVML, a CPU package through
RAPL) that can also be sampled for power, temperature, clocks, memory, utilisation and clock-event reasons.

The tracker, the sampler thread and the baseline work against this seam; tests drive them with a scripted fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from lem_runner.contract.energy import DeviceIdleState

#: NVML clock-event (throttle) reasons that mean the clocks were held down: software power cap, hardware slowdown,
#: software/hardware thermal slowdown, power-brake. Idle, application-clock and display settings are not throttling.
THROTTLE_MASK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80
THROTTLE_NAMES = {0x4: "sw_power_cap", 0x8: "hw_slowdown", 0x20: "sw_thermal", 0x40: "hw_thermal",
                  0x80: "hw_power_brake"}


@dataclass(frozen=True)
class DeviceSample:
    """One reading of a device's state; a field the device cannot report is None."""

    power_w: float | None = None
    temperature_c: float | None = None
    sm_clock_mhz: int | None = None
    memory_used_mib: float | None = None
    utilization_pct: float | None = None
    clock_event_reasons: int | None = None
    memory_clock_mhz: int | None = None
    power_limit_w: float | None = None  # the enforced limit, which a lock or another tool may have changed


@runtime_checkable
class CounterDevice(Protocol):
    #: how results name it: the CUDA index (or UUID) for a GPU, the RAPL zone for a CPU package
    id: str
    #: the physical identity (GPU UUID), for matching a cached baseline to the same hardware
    uuid: str | None
    #: the counter's range in millijoules, when it wraps at a known value (RAPL); None for NVML's 64-bit counter
    wrap_mj: float | None

    def energy_mj(self) -> float: ...

    def sample(self) -> DeviceSample: ...

    def other_processes(self) -> list[int] | None:
        """PIDs of other processes using the device, or None when the device cannot tell."""
        ...

    def persistence_mode(self) -> bool | None: ...

    def idle_state(self) -> DeviceIdleState:
        """What sets this device's idle power now (memory in use, power limit, clocks, persistence), for matching a
        cached baseline; fields it cannot report are None."""
        ...


def throttle_names(reasons: int) -> list[str]:
    return [name for bit, name in THROTTLE_NAMES.items() if reasons & bit]
