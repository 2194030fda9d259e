"""What one measured run observed, before any figure is derived: the loaded model, the idle baseline, the warmup, every
request's record and the energy source's reading over the window.

The measuring loop (``measure``) fills it; the result is assembled from it alone (``assemble``), so the two meet in
this plain record and neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from lem_runner.contract.energy import IdleBaseline
from lem_runner.contract.host_load import HostLoad
from lem_runner.contract.result import WarmupResult
from lem_runner.energy.base import EnergyReading
from lem_runner.records import GenerationRecord, LoadedModel


@dataclass(frozen=True)
class Observation:
    """One offline run as measured. Times ``w0``/``w1`` (time.perf_counter seconds) bound the measured run: the first
    generate call and the last token; ``records`` are every measured request, in order."""

    loaded: LoadedModel
    load_s: float  # model load wall time, outside the window
    n_batches: int  # batches the prompt set was cut into
    baseline: IdleBaseline | None
    baseline_reason: str | None  # why there is no baseline, when there is none
    warmup: WarmupResult
    records: list[GenerationRecord]
    n_calls: int  # measured generate calls (windowed runs cycle the batches)
    w0: float
    w1: float
    reading: EnergyReading
    selected_because: str | None  # why this energy source was used
    start_time: datetime
    end_time: datetime
    prompt_warnings: list[str] = field(default_factory=list)
    process_cpu_s: float | None = None  # the runner process's CPU time over the window (time.process_time)
    host_load: HostLoad | None = None  # the host's CPU load over the window (measurement.host_load)
