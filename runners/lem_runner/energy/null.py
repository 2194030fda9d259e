"""The energy source for runs where none can be read: every figure null, with the exact reason."""

from __future__ import annotations

import time

from lem_runner.energy.base import EnergyReading


class NullEnergyBackend:
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
        duration = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        return EnergyReading(
            sampler=self.name, method="not measured", duration_s=duration, unavailable_reason=self.reason
        )
