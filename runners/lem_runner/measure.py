"""One experiment, measured: load, probe the energy source, take the idle baseline, warm up outside the window, run
the prompts inside it. What was observed goes into an ``Observation``; ``assemble`` derives every figure (windows,
phases, FLOPs, quality flags) from it.

Backends and energy sources arrive through their protocols, so this loop is the same for every engine and is
tested with fakes at those seams.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from lem_runner.assemble import assemble_result
from lem_runner.backends.base import InferenceBackend
from lem_runner.contract.environment import EnvironmentInfo
from lem_runner.contract.host_load import HostLoad
from lem_runner.contract.protocol import ProgressEvent, RunRequest
from lem_runner.contract.result import ExperimentResult
from lem_runner.energy.base import EnergyReading, EnergySource
from lem_runner.measurement.baseline import obtain_baseline
from lem_runner.measurement.host_load import host_load
from lem_runner.measurement.host_load import snapshot as load_snapshot
from lem_runner.measurement.warmup import run_warmup, warmup_batch
from lem_runner.observation import Observation
from lem_runner.prompts import load_prompts
from lem_runner.records import GenerationRecord, LoadedModel

Emit = Callable[[ProgressEvent], None]
EnergyFactory = Callable[[LoadedModel], EnergySource]
EnvironmentFactory = Callable[[LoadedModel], EnvironmentInfo]
Clock = Callable[[], float]


class Phase:
    """Tracks which phase a failure happened in, for error.json."""

    def __init__(self) -> None:
        self.name = "load"


def _chunks(prompts: list[str], size: int | None) -> list[list[str]]:
    size = size or len(prompts)
    return [prompts[i : i + size] for i in range(0, len(prompts), size)]


def _measured_run(cfg, backend: InferenceBackend, batches, energy: EnergySource, clock: Clock,
                  emit: Emit) -> tuple[list[GenerationRecord], int, float, float, EnergyReading, float, HostLoad | None]:
    """Every batch once (windowed: batches cycled until the span has passed) between start and stop of tracking.
    Each record's ``submitted`` is the start of its pass over the prompt set: the offline scenario hands the engine
    every prompt at once, so a later batch's wait for the earlier ones is queueing (see measurement.latency). The last
    value but one is the process's CPU time over the window (time.process_time, every thread), the last the host's
    CPU load over it (measurement.host_load)."""
    span = cfg.window.duration_s if cfg.window.mode == "windowed" else None
    total = sum(map(len, batches)) if span is None else None
    records: list[GenerationRecord] = []
    load0 = load_snapshot()
    energy.start_tracking()
    w0 = clock()
    cpu0 = time.process_time()
    i = 0
    submitted = w0
    while (i < len(batches)) if span is None else (clock() - w0 < span):
        if i and i % len(batches) == 0:
            submitted = clock()
        records.extend(replace(r, submitted=submitted) for r in backend.generate(batches[i % len(batches)]))
        i += 1
        emit(ProgressEvent(event="progress", done=len(records), total=total))
    w1 = clock()
    cpu_s = time.process_time() - cpu0
    reading = energy.stop_tracking()
    return records, i, w0, w1, reading, cpu_s, host_load(load0, load_snapshot())


def measure(
    request: RunRequest,
    backend: InferenceBackend,
    energy_for: EnergyFactory,
    emit: Emit,
    phase: Phase | None = None,
    prompts_path: str | None = None,
    clock: Clock = time.perf_counter,
) -> Observation:
    """Load, baseline, warm up and run the prompts once through the window; what was seen, no figure derived yet.
    Raises on failure; ``phase.name`` says where."""
    phase = phase or Phase()
    cfg = request.config
    start_time = datetime.now(UTC)

    phase.name = "load"
    t0 = clock()
    loaded = backend.load()
    load_s = clock() - t0
    emit(ProgressEvent(event="model_loaded", message=f"in {load_s:.1f} s", data={"seconds": load_s}))

    prompt_warnings: list[str] = []
    prompts = load_prompts(cfg.prompts, cfg.n_prompts, cfg.seed, prompts_path, prompt_warnings)
    batches = _chunks(prompts, backend.batch_size)
    energy = energy_for(loaded)

    phase.name = "baseline"
    energy.probe()
    baseline, baseline_reason = obtain_baseline(cfg.energy.baseline, energy, request.cached_baselines,
                                                datetime.now(UTC))
    if baseline is not None:
        emit(ProgressEvent(event="baseline", message=f"idle {baseline.power_w:.1f} W ({baseline.source})",
                           data={"power_w": baseline.power_w, "source": baseline.source}))

    phase.name = "warmup"

    def warm_batch(i: int) -> float:
        b0 = clock()
        backend.generate(batches[warmup_batch(cfg.warmup, i, len(batches))])
        emit(ProgressEvent(event="warmup", done=i + 1, total=cfg.warmup.n_batches if cfg.warmup.mode == "fixed"
                           else cfg.warmup.max_batches))
        return clock() - b0

    warmup = run_warmup(cfg.warmup, warm_batch)

    phase.name = "measure"
    records, n_calls, w0, w1, reading, cpu_s, load = _measured_run(cfg, backend, batches, energy, clock, emit)
    end_time = datetime.now(UTC)

    return Observation(
        loaded=loaded, load_s=load_s, n_batches=len(batches), baseline=baseline, baseline_reason=baseline_reason,
        warmup=warmup, records=records, n_calls=n_calls, w0=w0, w1=w1, reading=reading,
        selected_because=getattr(energy, "selected_because", None), start_time=start_time, end_time=end_time,
        prompt_warnings=prompt_warnings, process_cpu_s=cpu_s if loaded.engine_in_process else None,
        host_load=load,
    )


def run_measurement(
    request: RunRequest,
    backend: InferenceBackend,
    energy_for: EnergyFactory,
    environment_for: EnvironmentFactory,
    emit: Emit,
    phase: Phase | None = None,
    prompts_path: str | None = None,
    out_dir: Path | None = None,
    clock: Clock = time.perf_counter,
    observed: Callable[[Observation], None] | None = None,
) -> ExperimentResult:
    """Measure one experiment and return its result (the timeseries goes to ``out_dir`` when given). Raises on
    failure; ``phase.name`` says where. ``observed`` is handed what was seen (the quality figures after the window
    read the requests' tokens from it)."""
    phase = phase or Phase()
    obs = measure(request, backend, energy_for, emit, phase, prompts_path, clock)
    if observed is not None:
        observed(obs)
    phase.name = "analyse"
    result = assemble_result(request, obs, environment_for(obs.loaded), out_dir)
    emit(
        ProgressEvent(
            event="measured",
            message=f"{sum(r.output_tokens for r in obs.records)} output tokens in {obs.w1 - obs.w0:.2f} s",
            data={"tokens_per_second": result.output_tokens_per_second, "energy_j": result.total_energy_j},
        )
    )
    return result
