"""The offline result, assembled from what one run observed: every figure (windows, phases, FLOPs, latencies,
quality flags) derived from that one ``Observation``, nothing measured here.

The serving scenario builds its energy record with the same ``energy_result``, so both scenarios report energy in one
shape.
"""

from __future__ import annotations

from pathlib import Path

from lem_runner.contract.energy import EnergyResult, IdleBaseline, MeasuredDevice
from lem_runner.contract.environment import EnvironmentInfo
from lem_runner.contract.fingerprint import measurement_config_hash
from lem_runner.contract.protocol import RunRequest
from lem_runner.contract.result import ExperimentResult, FlopsResult, RunTotals, WindowFigures
from lem_runner.energy.base import EnergyReading
from lem_runner.energy.select import measures_gpu
from lem_runner.energy.timeseries import FILE_NAME as TIMESERIES_FILE
from lem_runner.energy.timeseries import write_timeseries
from lem_runner.energy.tracker import integrate_power
from lem_runner.measurement.flops import estimate_flops, flops_method
from lem_runner.measurement.intervals import Interval
from lem_runner.measurement.latency import RequestTiming, batch_ttft, queue_time, ttft_and_itl
from lem_runner.measurement.operating_point import observe
from lem_runner.measurement.phases import phase_spans, prefill_starts, split_phases
from lem_runner.measurement.quality import counter_vs_integrated, quality_flags
from lem_runner.measurement.windows import (
    STEADY_METHOD,
    saturated_spans,
    span_energy,
    span_energy_per_device,
    tokens_in,
    window_figures,
    window_flops,
)
from lem_runner.observation import Observation
from lem_runner.records import GenerationRecord, LoadedModel

#: how ``queue_time`` was obtained: every prefill start given by the engine (or by lem's own batching), or some
#: estimated from the engine's steps (measurement.phases.prefill_starts)
QUEUE_EXACT = "submission to the prefill start the engine reported (PyTorch: the request's batch start)"
QUEUE_ESTIMATED = ("submission to the prefill start estimated from the engine's steps: the end of the step before the "
                   "one that produced the request's first token")

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


def energy_result(reading: EnergyReading, selected_because: str | None, baseline: IdleBaseline | None,
                   baseline_reason: str | None, headline: WindowFigures, per_device: dict[str, float] | None,
                   integrated: float | None, rel_diff: float | None, n_samples: int,
                   timeseries: str | None, gpu_indices: list[int] | None = None) -> EnergyResult:
    resolution = reading.resolution_s()
    per_device = per_device if headline.energy_j is not None else None
    return EnergyResult(
        source=reading.source,
        method=reading.method,
        selected_because=selected_because,
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
    )


def assemble_result(request: RunRequest, obs: Observation, environment: EnvironmentInfo,
                    out_dir: Path | None = None) -> ExperimentResult:
    """The result of one observed run (the timeseries goes to ``out_dir`` when given)."""
    cfg = request.config
    loaded, records, reading, w0, w1 = obs.loaded, obs.records, obs.reading, obs.w0, obs.w1
    baseline, baseline_reason, warmup = obs.baseline, obs.baseline_reason, obs.warmup
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
    warnings = obs.prompt_warnings + list(reading.warnings) + [f.message for f in flags]
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

    return ExperimentResult(
        experiment_id=request.experiment_id,
        measurement_config_hash=measurement_config_hash(cfg),
        config=cfg,
        model_path=request.model_path,
        measurement_methodology=methodology,
        inference_time_s=head.duration_s,
        output_tokens=head.output_tokens,
        output_tokens_per_second=head.tokens_per_second,
        total_energy_j=head.energy_j,
        adjusted_energy_j=head.adjusted_energy_j,
        energy_per_token_j=head.energy_per_token_j,
        adjusted_energy_per_token_j=head.adjusted_energy_per_token_j,
        whole_run=RunTotals(n_requests=len(records), input_tokens=input_tokens, output_tokens=output_tokens,
                            total_tokens=input_tokens + output_tokens, duration_s=window_s,
                            process_cpu_s=obs.process_cpu_s),
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
        energy=energy_result(reading, obs.selected_because, baseline, baseline_reason, head, head_per_device,
                             integrated, rel_diff, n_samples, timeseries,
                             cfg.devices if measures_gpu(cfg, loaded.device_kind) else None),
        model_load_s=obs.load_s,
        warmup=warmup,
        batch_size=cfg.spec.applied_batch(cfg.section, loaded.details),
        batch_knob=cfg.spec.batch_knob,
        backend_details={
            **loaded.details,
            "n_batches": obs.n_batches,
            "measured_generate_calls": obs.n_calls,
            "parameters_total": loaded.parameters.total,
            "parameters_non_embedding": loaded.parameters.non_embedding,
        },
        engine_settings=loaded.engine_settings,
        warnings=warnings,
        quality_flags=[f.code for f in flags],
        environment=environment,
        operating_point=operating_point,
        start_time=obs.start_time,
        end_time=obs.end_time,
    )
