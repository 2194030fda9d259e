"""One experiment, measured: load, probe the energy source, take the idle baseline, warm up outside the window, run
the prompts inside it, then derive every figure (windows, phases, FLOPs, quality flags) from that one run.

Backends and energy sources arrive through their protocols, so this loop is the same for every engine and is
tested with fakes at those seams.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from lem_runner.backends.base import GenerationRecord, InferenceBackend, LoadedModel
from lem_runner.contract.fingerprint import measurement_config_hash
from lem_runner.contract.protocol import ProgressEvent, RunRequest
from lem_runner.contract.result import (
    EnergyResult,
    EnvironmentInfo,
    ExperimentResult,
    FlopsResult,
    IdleBaseline,
    WindowFigures,
)
from lem_runner.energy.base import EnergyBackend, EnergyReading
from lem_runner.energy.timeseries import FILE_NAME as TIMESERIES_FILE
from lem_runner.energy.timeseries import write_timeseries
from lem_runner.energy.tracker import integrate_power
from lem_runner.measurement.baseline import obtain_baseline
from lem_runner.measurement.flops import METHOD as FLOPS_METHOD
from lem_runner.measurement.flops import METHOD_NO_ATTENTION, estimate_flops
from lem_runner.measurement.latency import RequestTiming, ttft_and_itl
from lem_runner.measurement.phases import phase_spans, split_phases
from lem_runner.measurement.quality import counter_vs_integrated, quality_flags
from lem_runner.measurement.warmup import run_warmup
from lem_runner.measurement.windows import STEADY_METHOD, saturated_spans, span_energy, tokens_in, window_figures
from lem_runner.prompts import load_prompts

Emit = Callable[[ProgressEvent], None]
EnergyFactory = Callable[[LoadedModel], EnergyBackend]
EnvironmentFactory = Callable[[LoadedModel], EnvironmentInfo]
Clock = Callable[[], float]


class Phase:
    """Tracks which phase a failure happened in, for error.json."""

    def __init__(self) -> None:
        self.name = "load"


def _chunks(prompts: list[str], size: int | None) -> list[list[str]]:
    size = size or len(prompts)
    return [prompts[i : i + size] for i in range(0, len(prompts), size)]


def _measured_run(cfg, backend: InferenceBackend, batches, energy: EnergyBackend, clock: Clock,
                  emit: Emit) -> tuple[list[GenerationRecord], int, float, float, EnergyReading]:
    """Every batch once (windowed: batches cycled until the span has passed) between start and stop of tracking."""
    span = cfg.window.duration_s if cfg.window.mode == "windowed" else None
    total = sum(map(len, batches)) if span is None else None
    records: list[GenerationRecord] = []
    energy.start_tracking()
    w0 = clock()
    i = 0
    while (i < len(batches)) if span is None else (clock() - w0 < span):
        records.extend(backend.generate(batches[i % len(batches)]))
        i += 1
        emit(ProgressEvent(event="progress", done=len(records), total=total))
    w1 = clock()
    return records, i, w0, w1, energy.stop_tracking()


def _windows(cfg, records: list[GenerationRecord], reading: EnergyReading, baseline_w: float | None, w0: float,
             w1: float) -> tuple[dict[str, WindowFigures], str]:
    """Every span's figures, and which one headlines (the configured mode, or total when it had no span)."""
    output_tokens = sum(r.output_tokens for r in records)
    windows = {"total": window_figures([(w0, w1)], output_tokens, reading.total_j, baseline_w, w0,
                                       "every measured prompt, from the first generate call to the last token")}
    steady = saturated_spans(records, cfg.window.saturation)
    if steady:
        windows["steady_state"] = window_figures(steady, tokens_in(records, steady), span_energy(reading, steady),
                                                 baseline_w, w0,
                                                 STEADY_METHOD.format(saturation=cfg.window.saturation))
    if cfg.window.mode == "windowed":
        span = [(w0, w0 + cfg.window.duration_s)]
        windows["windowed"] = window_figures(span, tokens_in(records, span), span_energy(reading, span), baseline_w, w0,
                                             f"the first {cfg.window.duration_s:g} s of the run, prompts repeated "
                                             "to fill it; tokens counted by timestamp")
    methodology = cfg.window.mode if cfg.window.mode in windows else "total"
    return windows, methodology


def _energy_result(reading: EnergyReading, energy: EnergyBackend, baseline: IdleBaseline | None,
                   baseline_reason: str | None, headline: WindowFigures, integrated: float | None,
                   rel_diff: float | None, n_samples: int, timeseries: str | None) -> EnergyResult:
    return EnergyResult(
        sampler=reading.sampler,
        method=reading.method,
        selected_because=getattr(energy, "selected_because", None),
        total_energy_j=headline.energy_j,
        per_device_j=reading.per_device_j,
        unavailable_reason=reading.unavailable_reason,
        counter_update_period_ms=reading.update_period_s * 1000 if reading.update_period_s else None,
        counter_resets=reading.counter_resets,
        integrated_energy_j=integrated,
        counter_vs_integrated_rel_diff=rel_diff,
        sample_hz=reading.sample_hz,
        n_power_samples=n_samples,
        sampler_cpu_s=reading.sampler_cpu_s,
        timeseries_file=timeseries,
        baseline=baseline,
        baseline_unavailable_reason=baseline_reason if reading.total_j is not None else None,
        adjusted_energy_j=headline.adjusted_energy_j,
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
) -> ExperimentResult:
    """Measure one experiment and return its result (the timeseries goes to ``out_dir`` when given). Raises on
    failure; ``phase.name`` says where."""
    phase = phase or Phase()
    cfg = request.config
    start_time = datetime.now(UTC)

    phase.name = "load"
    t0 = clock()
    loaded = backend.load()
    load_sec = clock() - t0
    emit(ProgressEvent(event="model_loaded", message=f"in {load_sec:.1f} s", data={"seconds": load_sec}))

    prompt_warnings: list[str] = []
    prompts = load_prompts(cfg.prompts, cfg.n_prompts, cfg.seed, prompts_path, prompt_warnings)
    batches = _chunks(prompts, backend.batch_size)
    energy = energy_for(loaded)

    phase.name = "baseline"
    energy.probe()
    baseline, baseline_reason = obtain_baseline(cfg.energy.baseline, energy, request.cached_baseline,
                                                energy.device_uuids(), datetime.now(UTC))
    if baseline is not None:
        emit(ProgressEvent(event="baseline", message=f"idle {baseline.power_w:.1f} W ({baseline.source})",
                           data={"power_w": baseline.power_w, "source": baseline.source}))

    phase.name = "warmup"

    def warm_batch(i: int) -> float:
        b0 = clock()
        backend.generate(batches[i % len(batches)])
        emit(ProgressEvent(event="warmup", done=i + 1, total=cfg.warmup.n_batches if cfg.warmup.mode == "fixed"
                           else cfg.warmup.max_batches))
        return clock() - b0

    warmup = run_warmup(cfg.warmup, warm_batch)

    phase.name = "measure"
    records, n_calls, w0, w1, reading = _measured_run(cfg, backend, batches, energy, clock, emit)
    end_time = datetime.now(UTC)

    phase.name = "analyse"
    baseline_w = baseline.power_w if baseline is not None else None
    output_tokens = sum(r.output_tokens for r in records)
    windows, methodology = _windows(cfg, records, reading, baseline_w, w0, w1)
    head = windows[methodology]

    pre_flops, dec_flops = estimate_flops(loaded.parameters, loaded.shape,
                                          [(r.input_tokens, r.output_tokens) for r in records])
    total_flops = pre_flops + dec_flops
    input_tokens = sum(r.input_tokens for r in records)
    phases = split_phases(records, reading, pre_flops, dec_flops, origin=w0)
    ttft, itl = ttft_and_itl([RequestTiming(r.start, r.token_times) for r in records])

    per_device = [integrate_power(reading.samples, d, reading.t_start, reading.t_end)
                  for d in (reading.per_device_j or {})]
    integrated = sum(per_device) if per_device and None not in per_device else None  # type: ignore[arg-type]
    rel_diff = counter_vs_integrated(reading.total_j, integrated)
    n_samples = sum(1 for r in reading.samples if reading.t_start <= r.t <= reading.t_end)
    window_s = w1 - w0
    flags = quality_flags(reading, window_s, rel_diff, phase_spans(records)[0])
    warnings = prompt_warnings + list(reading.warnings) + [f.message for f in flags]
    if output_tokens == 0:
        warnings.append("no output tokens were generated")
    if methodology != cfg.window.mode:
        warnings.append(f"window mode '{cfg.window.mode}' had no span to cover (no request decoded two tokens): "
                        "headline figures are the total window's")

    timeseries = None
    if out_dir is not None and cfg.energy.timeseries and reading.samples:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_timeseries(reading.samples, out_dir / TIMESERIES_FILE, w0)
        timeseries = TIMESERIES_FILE

    result = ExperimentResult(
        experiment_id=request.experiment_id,
        measurement_config_hash=measurement_config_hash(cfg),
        config=cfg,
        model_path=request.model_path,
        measurement_methodology=methodology,
        n_requests=len(records),
        total_tokens=input_tokens + output_tokens,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_inference_time_sec=head.duration_s,
        avg_tokens_per_second=head.tokens_per_second,
        total_energy_j=head.energy_j,
        avg_energy_per_token_j=head.energy_per_token_j,
        avg_energy_per_token_adjusted_j=head.adjusted_energy_per_token_j,
        total_flops=total_flops,
        flops_method=FLOPS_METHOD if loaded.shape is not None else METHOD_NO_ATTENTION,
        flops=FlopsResult(
            total=total_flops, prefill=pre_flops, decode=dec_flops,
            per_output_token=total_flops / output_tokens if output_tokens else None,
            achieved_flops_per_s=total_flops / window_s if window_s > 0 else None,
            parameter_source=loaded.parameter_source,
            method=FLOPS_METHOD if loaded.shape is not None else METHOD_NO_ATTENTION,
        ),
        windows=windows,
        phases=phases,
        ttft=ttft,
        itl=itl,
        latency_method=loaded.latency_method,
        energy=_energy_result(reading, energy, baseline, baseline_reason, head, integrated, rel_diff, n_samples,
                              timeseries),
        model_load_sec=load_sec,
        warmup_batches=warmup.batches,
        warmup=warmup,
        backend_details={
            **loaded.details,
            "n_batches": len(batches),
            "measured_generate_calls": n_calls,
            "parameters_total": loaded.parameters.total,
            "parameters_non_embedding": loaded.parameters.non_embedding,
        },
        warnings=warnings,
        quality_flags=[f.code for f in flags],
        environment=environment_for(loaded),
        start_time=start_time,
        end_time=end_time,
    )
    emit(
        ProgressEvent(
            event="measured",
            message=f"{output_tokens} output tokens in {window_s:.2f} s",
            data={"tokens_per_second": result.avg_tokens_per_second, "energy_j": result.total_energy_j},
        )
    )
    return result
