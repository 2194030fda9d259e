"""One experiment, measured: load, probe the energy source, take the idle baseline, warm up outside the window, run
the prompts inside it, then derive every figure (windows, phases, FLOPs, quality flags) from that one run.

Backends and energy sources arrive through their protocols, so this loop is the same for every engine and is
tested with fakes at those seams.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
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
    MeasuredDevice,
    RunTotals,
    WindowFigures,
)
from lem_runner.energy.base import EnergyBackend, EnergyReading
from lem_runner.energy.timeseries import FILE_NAME as TIMESERIES_FILE
from lem_runner.energy.timeseries import write_timeseries
from lem_runner.energy.tracker import integrate_power
from lem_runner.measurement.baseline import obtain_baseline
from lem_runner.measurement.flops import estimate_flops, flops_method
from lem_runner.measurement.intervals import Interval
from lem_runner.measurement.latency import RequestTiming, batch_ttft, queue_time, ttft_and_itl
from lem_runner.measurement.operating_point import observe
from lem_runner.measurement.phases import phase_spans, prefill_starts, split_phases
from lem_runner.measurement.quality import counter_vs_integrated, quality_flags
from lem_runner.measurement.warmup import run_warmup, warmup_batch
from lem_runner.measurement.windows import (
    STEADY_METHOD,
    saturated_spans,
    span_energy,
    span_energy_per_device,
    tokens_in,
    window_figures,
    window_flops,
)
from lem_runner.prompts import load_prompts

#: how ``queue_time`` was obtained: every prefill start given by the engine (or by lem's own batching), or some
#: estimated from the engine's steps (measurement.phases.prefill_starts)
QUEUE_EXACT = "submission to the prefill start the engine reported (PyTorch: the request's batch start)"
QUEUE_ESTIMATED = ("submission to the prefill start estimated from the engine's steps: the end of the step before the "
                   "one that produced the request's first token")

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
                  emit: Emit) -> tuple[list[GenerationRecord], int, float, float, EnergyReading, float]:
    """Every batch once (windowed: batches cycled until the span has passed) between start and stop of tracking.
    Each record's ``submitted`` is the start of its pass over the prompt set: the offline scenario hands the engine
    every prompt at once, so a later batch's wait for the earlier ones is queueing (see measurement.latency). The last
    value is the process's CPU time over the window (time.process_time, every thread)."""
    span = cfg.window.duration_s if cfg.window.mode == "windowed" else None
    total = sum(map(len, batches)) if span is None else None
    records: list[GenerationRecord] = []
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
    return records, i, w0, w1, energy.stop_tracking(), cpu_s


def _windows(cfg, records: list[GenerationRecord], reading: EnergyReading, baseline_w: float | None, w0: float,
             w1: float, loaded: LoadedModel,
             run_flops: float) -> tuple[dict[str, WindowFigures], dict[str, list[Interval]], str]:
    """Every span's figures and spans, and which one headlines (the configured mode, or total when it had no span)."""
    output_tokens = sum(r.output_tokens for r in records)
    spans = {"total": [(w0, w1)]}
    windows = {"total": window_figures(spans["total"], output_tokens, reading.total_j, baseline_w, w0,
                                       "every measured prompt, from the first generate call to the last token",
                                       reading.unavailable_reason, run_flops)}

    def sub_window(name: str, span: list[Interval], method: str) -> None:
        energy, reason = span_energy(reading, span)
        spans[name] = span
        windows[name] = window_figures(span, tokens_in(records, span), energy, baseline_w, w0, method, reason,
                                       window_flops(records, span, loaded.parameters, loaded.shape))

    steady = saturated_spans(records, cfg.window.saturation)
    if steady:
        sub_window("steady_state", steady, STEADY_METHOD.format(saturation=cfg.window.saturation))
    if cfg.window.mode == "windowed":
        sub_window("windowed", [(w0, w0 + cfg.window.duration_s)],
                   f"the first {cfg.window.duration_s:g} s of the run, prompts repeated to fill it; tokens counted "
                   "by timestamp")
    methodology = cfg.window.mode if cfg.window.mode in windows else "total"
    return windows, spans, methodology


def measured_devices(reading: EnergyReading, per_device: dict[str, float] | None,
                     gpu_indices: list[int] | None) -> list[MeasuredDevice]:
    """Each measured device beside its UUID, with its headline-window energy (None where that is null);
    ``gpu_indices`` (the config's devices, for a GPU run) name them in order."""
    measured = reading.per_device_j or {}
    indices = gpu_indices if gpu_indices is not None and len(gpu_indices) == len(measured) else None
    return [MeasuredDevice(index=indices[i] if indices else None, id=dev_id, uuid=reading.uuids.get(dev_id),
                           energy_j=(per_device or {}).get(dev_id)) for i, dev_id in enumerate(measured)]


def _energy_result(reading: EnergyReading, energy: EnergyBackend, baseline: IdleBaseline | None,
                   baseline_reason: str | None, headline: WindowFigures, per_device: dict[str, float] | None,
                   integrated: float | None, rel_diff: float | None, n_samples: int,
                   timeseries: str | None, gpu_indices: list[int] | None = None) -> EnergyResult:
    resolution = reading.resolution_s()
    per_device = per_device if headline.energy_j is not None else None
    return EnergyResult(
        sampler=reading.sampler,
        method=reading.method,
        selected_because=getattr(energy, "selected_because", None),
        total_energy_j=headline.energy_j,
        per_device_j=per_device,
        devices=measured_devices(reading, per_device, gpu_indices),
        unavailable_reason=reading.unavailable_reason if reading.total_j is None else
        headline.energy_unavailable_reason,
        counter_update_period_ms=reading.update_period_s * 1000 if reading.update_period_s else None,
        counter_resets=reading.counter_resets,
        integrated_energy_j=integrated,
        counter_vs_integrated_rel_diff=rel_diff,
        sample_hz=reading.sample_hz,
        resolution_ms=resolution * 1000 if resolution is not None else None,
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
    records, n_calls, w0, w1, reading, cpu_s = _measured_run(cfg, backend, batches, energy, clock, emit)
    end_time = datetime.now(UTC)

    phase.name = "analyse"
    baseline_w = baseline.power_w if baseline is not None else None
    output_tokens = sum(r.output_tokens for r in records)
    pre_flops, dec_flops = estimate_flops(loaded.parameters, loaded.shape,
                                          [(r.input_tokens, r.output_tokens) for r in records])
    total_flops = pre_flops + dec_flops
    windows, spans, methodology = _windows(cfg, records, reading, baseline_w, w0, w1, loaded, total_flops)
    head = windows[methodology]
    head_per_device = (reading.per_device_j if methodology == "total"
                       else span_energy_per_device(reading, spans[methodology]))

    input_tokens = sum(r.input_tokens for r in records)
    phases = split_phases(records, reading, pre_flops, dec_flops, origin=w0)
    starts = prefill_starts(records)
    timings = [RequestTiming(r.start, r.token_times, r.submitted, s) for r, s in zip(records, starts)]
    ttft, itl = ttft_and_itl(timings)
    exact = all(r.scheduled is not None for r in records if r.token_times)

    per_device = [integrate_power(reading.samples, d, reading.t_start, reading.t_end)
                  for d in (reading.per_device_j or {})]
    integrated = sum(per_device) if per_device and None not in per_device else None  # type: ignore[arg-type]
    rel_diff = counter_vs_integrated(reading.total_j, integrated)
    n_samples = sum(1 for r in reading.samples if reading.t_start <= r.t <= reading.t_end)
    window_s = w1 - w0
    flags = quality_flags(reading, window_s, rel_diff, *phase_spans(records), headline=head)
    operating_point, drift = observe(reading.samples, reading.t_start, reading.t_end, request.gpu_settings)
    flags += drift
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
        total_inference_time_sec=head.duration_s,
        output_tokens=head.output_tokens,
        output_tokens_per_second=head.tokens_per_second,
        total_energy_j=head.energy_j,
        avg_energy_per_token_j=head.energy_per_token_j,
        avg_energy_per_token_adjusted_j=head.adjusted_energy_per_token_j,
        total_flops=head.flops,
        whole_run=RunTotals(n_requests=len(records), input_tokens=input_tokens, output_tokens=output_tokens,
                            total_tokens=input_tokens + output_tokens, duration_s=window_s, flops=total_flops,
                            process_cpu_s=cpu_s if loaded.engine_in_process else None),
        flops_method=flops_method(loaded.parameters, loaded.shape),
        flops=FlopsResult(
            total=total_flops, prefill=pre_flops, decode=dec_flops,
            per_output_token=total_flops / output_tokens if output_tokens else None,
            achieved_flops_per_s=total_flops / window_s if window_s > 0 else None,
            parameter_source=loaded.parameter_source,
            method=flops_method(loaded.parameters, loaded.shape),
            active_non_embedding_parameters=loaded.parameters.active_non_embedding,
        ),
        windows=windows,
        phases=phases,
        ttft=ttft,
        itl=itl,
        queue_time=queue_time(timings),
        queue_time_method=QUEUE_EXACT if exact else QUEUE_ESTIMATED,
        batch_ttft=batch_ttft(timings),
        latency_method=loaded.latency_method,
        energy=_energy_result(reading, energy, baseline, baseline_reason, head, head_per_device, integrated,
                              rel_diff, n_samples, timeseries, cfg.devices if loaded.device_kind == "cuda" else None),
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
        operating_point=operating_point,
        start_time=start_time,
        end_time=end_time,
    )
    emit(
        ProgressEvent(
            event="measured",
            message=f"{output_tokens} output tokens in {window_s:.2f} s",
            data={"tokens_per_second": result.output_tokens_per_second, "energy_j": result.total_energy_j},
        )
    )
    return result
