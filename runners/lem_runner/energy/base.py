"""The EnergyBackend protocol and the reading it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class EnergyReading:
    """Energy over one tracking window. ``total_j`` is None when nothing was measured; ``unavailable_reason`` says why."""

    sampler: str
    method: str
    duration_s: float
    total_j: float | None = None
    per_device_j: dict[str, float] | None = None
    unavailable_reason: str | None = None
    warnings: list[str] = field(default_factory=list)


@runtime_checkable
class EnergyBackend(Protocol):
    """Measures energy between ``start_tracking`` and ``stop_tracking``."""

    name: str

    def is_available(self) -> bool: ...

    def start_tracking(self) -> None: ...

    def stop_tracking(self) -> EnergyReading: ...
