"""One experiment, measured: load, warm up outside the window, run every prompt inside it, assemble the result.

Backends and energy sources arrive through their protocols, so this loop is the same for every engine and is
tested with fakes at those seams.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from lem_runner.backends.base import GenerationRecord, InferenceBackend, LoadedModel
from lem_runner.contract.fingerprint import measurement_config_hash
from lem_runner.contract.protocol import ProgressEvent, RunRequest
from lem_runner.contract.result import EnergyResult, EnvironmentInfo, ExperimentResult
from lem_runner.energy.base import EnergyBackend, EnergyReading
from lem_runner.measurement.flops import METHOD as FLOPS_METHOD
from lem_runner.measurement.flops import estimate_flops
from lem_runner.measurement.latency import RequestTiming, ttft_and_itl
from lem_runner.prompts import load_prompts

Emit = Callable[[ProgressEvent], None]
EnergyFactory = Callable[[LoadedModel], EnergyBackend]
EnvironmentFactory = Callable[[LoadedModel], EnvironmentInfo]

#: Below this window length an energy counter's update period makes the figure unreliable.
MIN_RELIABLE_WINDOW_S = 1.0


class Phase:
    """Tracks which phase a failure happened in, for error.json."""

    def __init__(self) -> None:
        self.name = "load"


def _chunks(prompts: list[str], size: int | None) -> list[list[str]]:
    size = size or len(prompts)
    return [prompts[i : i + size] for i in range(0, len(prompts), size)]


def _energy_result(reading: EnergyReading) -> EnergyResult:
    return EnergyResult(
        sampler=reading.sampler,
        method=reading.method,
        total_energy_j=reading.total_j,
        per_device_j=reading.per_device_j,
        unavailable_reason=reading.unavailable_reason,
    )


def run_measurement(
    request: RunRequest,
    backend: InferenceBackend,
    energy_for: EnergyFactory,
    environment_for: EnvironmentFactory,
    emit: Emit,
    phase: Phase | None = None,
    prompts_path: str | None = None,
) -> ExperimentResult:
    """Measure one experiment and return its result. Raises on failure; ``phase.name`` says where."""
    phase = phase or Phase()
    cfg = request.config
    start_time = datetime.now(UTC)

    phase.name = "load"
    t0 = time.perf_counter()
    loaded = backend.load()
    load_sec = time.perf_counter() - t0
    emit(ProgressEvent(event="model_loaded", message=f"model loaded in {load_sec:.1f} s", data={"seconds": load_sec}))

    prompts = load_prompts(cfg.prompts, cfg.n_prompts, cfg.seed, prompts_path)
    batches = _chunks(prompts, backend.batch_size)
    energy = energy_for(loaded)

    phase.name = "warmup"
    for i in range(cfg.warmup.n_batches):
        backend.generate(batches[i % len(batches)])
        emit(ProgressEvent(event="warmup", done=i + 1, total=cfg.warmup.n_batches))

    phase.name = "measure"
    records: list[GenerationRecord] = []
    energy.start_tracking()
    w0 = time.perf_counter()
    for batch in batches:
        records.extend(backend.generate(batch))
        emit(ProgressEvent(event="progress", done=len(records), total=len(prompts)))
    window = time.perf_counter() - w0
    reading = energy.stop_tracking()
    end_time = datetime.now(UTC)

    input_tokens = sum(r.input_tokens for r in records)
    output_tokens = sum(r.output_tokens for r in records)
    ttft, itl = ttft_and_itl([RequestTiming(r.start, r.token_times) for r in records])

    warnings = list(reading.warnings)
    if reading.total_j is not None and window < MIN_RELIABLE_WINDOW_S:
        warnings.append(
            f"measurement window {window:.2f} s is under {MIN_RELIABLE_WINDOW_S:.0f} s: the energy counter's update "
            "period makes this figure coarse; use more prompts"
        )
    if output_tokens == 0:
        warnings.append("no output tokens were generated")

    result = ExperimentResult(
        experiment_id=request.experiment_id,
        measurement_config_hash=measurement_config_hash(cfg),
        config=cfg,
        model_path=request.model_path,
        measurement_methodology="total",
        n_requests=len(records),
        total_tokens=input_tokens + output_tokens,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_inference_time_sec=window,
        avg_tokens_per_second=output_tokens / window if window > 0 else 0.0,
        total_energy_j=reading.total_j,
        avg_energy_per_token_j=(reading.total_j / output_tokens) if reading.total_j is not None and output_tokens else None,
        total_flops=estimate_flops(loaded.parameters, input_tokens, output_tokens),
        flops_method=FLOPS_METHOD,
        ttft=ttft,
        itl=itl,
        latency_method=loaded.latency_method,
        energy=_energy_result(reading),
        model_load_sec=load_sec,
        warmup_batches=cfg.warmup.n_batches,
        backend_details={
            **loaded.details,
            "n_batches": len(batches),
            "parameters_total": loaded.parameters.total,
            "parameters_non_embedding": loaded.parameters.non_embedding,
        },
        warnings=warnings,
        environment=environment_for(loaded),
        start_time=start_time,
        end_time=end_time,
    )
    emit(
        ProgressEvent(
            event="measured",
            message=f"{output_tokens} output tokens in {window:.2f} s",
            data={"tokens_per_second": result.avg_tokens_per_second, "energy_j": reading.total_j},
        )
    )
    return result
