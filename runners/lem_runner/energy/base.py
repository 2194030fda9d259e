"""The EnergySource protocol and the reading it returns.

A source measures an idle baseline on request, then tracks one window (``start_tracking`` … ``stop_tracking``). The
reading keeps the counter series, so the measurement loop can ask for the energy of any span of the window (a phase,
the steady state) after the fact, without reading counters in the workload's path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from lem_runner.contract.energy import DeviceIdleState, IdleBaseline
from lem_runner.energy.counter import CounterTrack
from lem_runner.energy.sampler import SampleRow


@dataclass
class EnergyReading:
    """Energy over one tracking window. ``total_j`` is None when nothing was measured; ``unavailable_reason`` says why.

    ``tracks`` (per device) answer energy between any two instants of the window; ``samples`` is the timeseries."""

    source: str  # the energy source's name (nvml_counter, rapl, ...)
    method: str
    duration_s: float
    total_j: float | None = None
    per_device_j: dict[str, float] | None = None
    unavailable_reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    t_start: float = 0.0
    t_end: float = 0.0
    tracks: dict[str, CounterTrack] | None = None
    samples: list[SampleRow] = field(default_factory=list)
    sample_hz: float | None = None
    sampler_cpu_s: float | None = None
    update_period_s: float | None = None
    counter_resets: int = 0
    persistence_off: list[str] = field(default_factory=list)
    other_processes: dict[str, list[int]] = field(default_factory=dict)
    uuids: dict[str, str | None] = field(default_factory=dict)  # device id -> physical identity (GPU UUID)

    def energy_between(self, t0: float, t1: float) -> float | None:
        """Joules between two instants inside the window, summed over devices (None without a counter series)."""
        if self.tracks is None or self.total_j is None:
            return None
        return sum(track.between(t0, t1) for track in self.tracks.values())

    def _points(self, dev: str, track: CounterTrack) -> int:
        """How many instants tell this device's series apart: power samples inside the window where they shape the
        series, else counter reads."""
        if track.shape is None:
            return track.reads
        return sum(1 for r in self.samples if r.device == dev and r.sample.power_w is not None
                   and self.t_start <= r.t <= self.t_end)

    def resolution_s(self) -> float | None:
        """The shortest span whose energy the series resolves: the mean interval between the instants that shape it
        (power samples, else counter reads; the window itself with only its two boundary reads), never below the
        counter's update period; the worst device's. None without a series."""
        if self.tracks is None or self.total_j is None:
            return None
        window = self.t_end - self.t_start
        worst = max((window / (n - 1) if (n := self._points(d, t)) >= 2 else window
                     for d, t in self.tracks.items()), default=window)
        return max(worst, self.update_period_s or 0.0)

    def sub_span_reason(self) -> str | None:
        """Why the energy of a span inside the window (a phase, the steady state, a fixed window) cannot be taken from
        this reading; None when it can."""
        if self.total_j is None:
            return self.unavailable_reason or "no energy measured"
        if self.tracks is None:
            return (f"the {self.source} source reports window totals only, not a series to take a span's energy "
                    "from")
        still = [d for d, t in self.tracks.items() if t.between(self.t_start, self.t_end) <= 0]
        if still:
            period = (f"it updates every {self.update_period_s * 1000:.0f} ms,"
                      if self.update_period_s else "its update period is")
            return (f"the energy counter of {', '.join(still)} did not update inside the "
                    f"{self.t_end - self.t_start:.3f} s window ({period} longer than the window), so every span "
                    "inside it would read 0 J: not a measurement")
        if any(self._points(d, t) <= 2 for d, t in self.tracks.items()):
            return ("the energy series holds only the window's two boundary reads (energy.sample_hz: 0, or the "
                    "sampler stopped), so a span inside the window would get a time share of the total, not a "
                    "measurement")
        return None


@runtime_checkable
class EnergySource(Protocol):
    """Measures energy between ``start_tracking`` and ``stop_tracking``."""

    name: str

    def is_available(self) -> bool: ...

    def probe(self) -> None:
        """Outside any window: measure what the source needs to know about itself (its counter's update period)."""
        ...

    def idle_baseline(self, duration_s: float) -> IdleBaseline | None:
        """Mean power over ``duration_s`` with nothing running; None when this source cannot measure one."""
        ...

    def device_uuids(self) -> list[str]:
        """Physical identities of the measured devices (to match a cached baseline); empty when unknown."""
        ...

    def idle_conditions(self) -> list[DeviceIdleState]:
        """Each measured device's idle-relevant state now (the key a cached baseline must match); empty when the
        source has no devices to ask."""
        ...

    def start_tracking(self) -> None: ...

    def stop_tracking(self) -> EnergyReading: ...


class WindowTotalsOnly:
    """Defaults for a source that measures a window's total and nothing else: no counter period to probe, no idle
    baseline, no device identities."""

    def probe(self) -> None:
        pass

    def idle_baseline(self, duration_s: float) -> IdleBaseline | None:
        return None

    def device_uuids(self) -> list[str]:
        return []

    def idle_conditions(self) -> list[DeviceIdleState]:
        return []
