"""What one simulated GPU reports at a wall-clock instant, in the scenario's units (W, J, MHz, MiB): its power under
the power limit, the energy counter's value at its last 100 ms update, the 1 s averaged and the instantaneous
power as NVML gives them, temperature, clocks, clock-event reasons and memory.

Power limit: the device draws min(trace, limit in force); the limit's history comes from the state file, so the
counter stays one monotonic integral across limit changes made by any process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lem_runner.simgpu.scenario import DeviceSpec
from lem_runner.simgpu.state import State

# NVML clock-event reason bits (nvmlClocksEventReason*), from nvml.h
GPU_IDLE = 0x1
APPLICATIONS_CLOCKS_SETTING = 0x2
SW_POWER_CAP = 0x4


@dataclass
class DeviceModel:
    spec: DeviceSpec
    state: State
    t0: float
    update_s: float
    average_s: float

    # --- settings as they stand now -----------------------------------------------------------------------------
    def settings(self) -> dict:
        return self.state.device(self.spec.uuid)

    def power_limit_w(self) -> float:
        mw = self.settings()["power_limit_mw"]
        return self.spec.power_limit_default_w if mw is None else mw / 1000.0

    def _caps(self) -> list[tuple[float, float]]:
        """(from epoch, limit W) in force, oldest first; the default limit before the first change."""
        history = [(float(t), float(w)) for t, w in self.settings()["limit_history"]]
        return [(-math.inf, self.spec.power_limit_default_w), *history]

    # --- power and energy -------------------------------------------------------------------------------------
    def tick(self, t: float) -> float:
        """The last counter/power update instant at or before ``t`` (updates every ``update_s`` from t0)."""
        return self.t0 + math.floor((t - self.t0) / self.update_s + 1e-9) * self.update_s

    def cap_at(self, t: float) -> float:
        cap = self.spec.power_limit_default_w
        for since, w in self._caps():
            if since <= t:
                cap = w
        return cap

    def power_w(self, t: float) -> float:
        """Power drawn at ``t``: the trace under the limit then in force."""
        return self.spec.trace.power_w(t - self.t0, self.cap_at(t))

    def energy_j(self, t: float) -> float:
        """Joules from t0 to ``t`` (negative before t0), under the limit history."""
        caps = self._caps()
        lo, hi, sign = (self.t0, t, 1.0) if t >= self.t0 else (t, self.t0, -1.0)
        total = 0.0
        for i, (since, cap) in enumerate(caps):
            until = caps[i + 1][0] if i + 1 < len(caps) else math.inf
            a, b = max(lo, since), min(hi, until)
            if b > a:
                total += self.spec.trace.energy_j(a - self.t0, b - self.t0, cap)
        return sign * total

    def counter_mj(self, t: float) -> int:
        """nvmlDeviceGetTotalEnergyConsumption: millijoules since the driver loaded, as of the last update."""
        return self.spec.energy_mj_at_t0 + int(math.floor(self.energy_j(self.tick(t)) * 1000.0))

    def average_power_w(self, t: float) -> float:
        """nvmlDeviceGetPowerUsage on Ampere and newer: the mean over the last ``average_s`` as of the last update."""
        k = self.tick(t)
        return (self.energy_j(k) - self.energy_j(k - self.average_s)) / self.average_s

    def instant_power_w(self, t: float) -> float:
        """NVML_FI_DEV_POWER_INSTANT: power at the last update."""
        return self.power_w(self.tick(t))

    # --- the rest of what the device reports ------------------------------------------------------------------
    def _segment(self, t: float):
        return self.spec.trace.segment_at(t - self.t0)

    def idle(self, t: float) -> bool:
        return self.power_w(t) <= self.spec.idle_w

    def capped(self, t: float) -> bool:
        return self.spec.trace.power_w(t - self.t0) > self.cap_at(t) + 1e-9

    def temperature_c(self, t: float) -> int:
        seg = self._segment(t)
        if seg.temperature_c is not None:
            return int(seg.temperature_c)
        extra = max(0.0, self.power_w(t) - self.spec.idle_w) * self.spec.temperature_per_w
        return int(round(self.spec.temperature_idle_c + extra))

    def applications_clocks(self) -> tuple[int, int]:
        """(memory, SM) application clock targets."""
        app = self.settings()["applications_clocks"]
        if app is None:
            return max(self.spec.memory_clocks_mhz), self.spec.sm_clock_max_mhz
        return int(app[0]), int(app[1])

    def sm_clock_mhz(self, t: float) -> int:
        seg = self._segment(t)
        if seg.sm_clock_mhz is not None:
            return int(seg.sm_clock_mhz)
        locked = self.settings()["locked_sm_clocks"]
        lo, hi = (locked if locked else (0, self.applications_clocks()[1]))
        if self.idle(t):
            clock = max(self.spec.sm_clock_idle_mhz, lo)
        else:
            clock = hi
            if self.capped(t):  # the power cap pulls the clock down in proportion
                clock = int(clock * self.cap_at(t) / self.spec.trace.power_w(t - self.t0))
            clock = max(clock, lo)
        return int(min(clock, hi))

    def memory_clock_mhz(self) -> int:
        locked = self.settings()["locked_memory_clocks"]
        return int(locked[1]) if locked else self.applications_clocks()[0]

    def clock_event_reasons(self, t: float) -> int:
        reasons = self._segment(t).reasons
        if self.idle(t):
            reasons |= GPU_IDLE
        if self.capped(t):
            reasons |= SW_POWER_CAP
        settings = self.settings()
        if settings["locked_sm_clocks"] or settings["applications_clocks"]:
            reasons |= APPLICATIONS_CLOCKS_SETTING
        return reasons

    def utilization_pct(self, t: float) -> int:
        seg = self._segment(t)
        if seg.utilization_pct is not None:
            return int(seg.utilization_pct)
        span = max(1.0, self.spec.power_limit_default_w - self.spec.idle_w)
        return int(round(100 * min(1.0, max(0.0, self.power_w(t) - self.spec.idle_w) / span)))

    def memory_used_mib(self, t: float) -> float:
        seg = self._segment(t)
        return float(seg.memory_used_mib if seg.memory_used_mib is not None else self.spec.memory_used_mib)

    def persistence(self) -> bool:
        mode = self.settings()["persistence"]
        return self.spec.persistence_default if mode is None else bool(mode)
