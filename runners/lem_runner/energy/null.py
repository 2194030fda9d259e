"""The energy source for runs where none can be read: every figure null, with the exact reason."""

from __future__ import annotations

import time

from lem_runner.energy.base import EnergyReading, WindowTotalsOnly


class NullEnergySource(WindowTotalsOnly):
    """Measures nothing and says why."""

    name = "none"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self._t0: float | None = None

    def is_available(self) -> bool:
        return False

    def start_tracking(self) -> None:
        self._t0 = time.perf_counter()

    def stop_tracking(self) -> EnergyReading:
        t1 = time.perf_counter()
        t0 = self._t0 if self._t0 is not None else t1
        return EnergyReading(source=self.name, method="not measured", duration_s=t1 - t0,
                             unavailable_reason=self.reason, t_start=t0, t_end=t1)
