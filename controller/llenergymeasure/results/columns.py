"""The flat row of one experiment: stable snake_case column names with the unit in the name (_s, _ms, _j, _w,
_per_s), the same for CSV, Parquet, JSON lines and ``load_results``. Adding a column is fine; renaming one breaks
people's notebooks, so ``COLUMNS`` is the contract (docs/results-columns.md is generated from it).

A figure that was not measured is null (an empty CSV cell), never 0; a failed run keeps its identity and config
columns and says why in ``error``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from lem_runner.contract import ExperimentConfig, ExperimentResult, LatencyStats, WindowFigures

from llenergymeasure.results.carbon import emissions_per_token_g, result_emissions_g
from llenergymeasure.results.discover import Experiment

Kind = Literal["str", "int", "float", "bool", "datetime"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    description: str
    read: Callable[[Experiment], Any]


def _r(read: Callable[[ExperimentResult], Any]) -> Callable[[Experiment], Any]:
    """A reader of the result, null for a failed run."""
    return lambda e: None if e.result is None else read(e.result)


def _headline_flops(r: ExperimentResult) -> float | None:
    """The headline window's FLOPs (windows[measurement_methodology].flops)."""
    return r.headline.flops if r.headline else None


def _c(read: Callable[[ExperimentConfig], Any]) -> Callable[[Experiment], Any]:
    """A reader of the config (the result's, or config.json beside a failed run's error.json)."""
    return lambda e: None if e.config is None else read(e.config)


def batch_size(e: Experiment) -> int | None:
    """The batch as the backend applied it (the result's batch_size); for a result written before it existed or a
    failed run, what the backend reported under its knob's name, else what the config asked for."""
    if e.result is not None and e.result.batch_size is not None:
        return e.result.batch_size
    if e.config is None:
        return None
    details = e.result.backend_details if e.result is not None else {}
    return e.config.spec.applied_batch(e.config.section, details)


def batch_knob(e: Experiment) -> str | None:
    if e.result is not None and e.result.batch_knob is not None:
        return e.result.batch_knob
    return None if e.config is None else e.config.spec.batch_knob


def _resolved(key: str, fallback: Callable[[ExperimentConfig], Any]) -> Callable[[Experiment], Any]:
    """What the backend reported it used (backend_details), else what the config asked for."""
    def read(e: Experiment) -> Any:
        if e.result is not None and e.result.backend_details.get(key) is not None:
            return e.result.backend_details[key]
        return None if e.config is None else fallback(e.config)
    return read


def _serving(attr: str) -> Callable[[Experiment], Any]:
    return _r(lambda r: None if r.serving is None else getattr(r.serving, attr))


def _latency(which: str, stat: str) -> Callable[[Experiment], Any]:
    def read(r: ExperimentResult) -> Any:
        stats: LatencyStats | None = getattr(r, which, None) or getattr(r.serving, which, None)
        return None if stats is None else getattr(stats, f"{stat}_ms")
    return _r(read)


def _window(name: str, attr: str) -> Callable[[Experiment], Any]:
    def read(r: ExperimentResult) -> Any:
        w: WindowFigures | None = r.windows.get(name)
        return None if w is None else getattr(w, attr)
    return _r(read)


def _phase(name: str, attr: str) -> Callable[[Experiment], Any]:
    return _r(lambda r: None if r.phases is None else getattr(getattr(r.phases, name), attr))


def _baseline(attr: str) -> Callable[[Experiment], Any]:
    return _r(lambda r: None if r.energy.baseline is None else getattr(r.energy.baseline, attr))


def _cache_check(attr: str) -> Callable[[Experiment], Any]:
    def read(r: ExperimentResult) -> Any:
        check = r.energy.baseline.cache_check if r.energy.baseline is not None else None
        return None if check is None else getattr(check, attr)
    return _r(read)


def _gpu(read: Callable[[Any], Any]) -> Callable[[Experiment], Any]:
    return _r(lambda r: read(r.environment.gpus[0]) if r.environment.gpus else None)


COLUMNS: list[Column] = [
    Column("experiment_id", "str", "the run's id (its folder name)", lambda e: e.experiment_id),
    Column("path", "str", "the experiment folder", lambda e: str(e.path)),
    Column("status", "str", "done, or failed (error.json, or a result that does not validate)", lambda e: e.status),
    Column("error", "str", "why a failed run has no result", lambda e: e.failure),
    Column("study", "str", "the study it belongs to (from the study's manifest)", lambda e: e.study),
    Column("study_point", "str", "the study point's label, e.g. pytorch.batch_size=4", lambda e: e.label),
    Column("cycle", "int", "the study cycle, from 1", lambda e: e.cycle),
    Column("start_time", "datetime", "start of the run (UTC); a failed run: when its error was written",
           lambda e: e.when),
    Column("end_time", "datetime", "end of the run (UTC)", _r(lambda r: r.end_time)),
    Column("experiment_name", "str", "the config's name (the folder's prefix)", _c(lambda c: c.experiment_name)),
    Column("model", "str", "hub id, local folder or embedded model, as configured", _c(lambda c: c.model)),
    Column("backend", "str", "the inference backend (a name the backend registry knows)", _c(lambda c: c.backend)),
    Column("dtype", "str", "dtype the backend used (the config's when it did not report one)",
           _resolved("dtype", lambda c: c.dtype)),
    Column("device", "str", "cpu or cuda as used (the config's when not reported)",
           _resolved("device", lambda c: c.device)),
    Column("devices", "str", "GPU indices, comma-separated", _c(lambda c: ",".join(map(str, c.devices)))),
    Column("batch_size", "int", "the batch as the backend applied it, from its batch knob (batch_knob)", batch_size),
    Column("batch_knob", "str", "the config field batch_size comes from, e.g. vllm.max_num_seqs", batch_knob),
    Column("n_prompts", "int", "prompts configured (windowed mode repeats them)", _c(lambda c: c.n_prompts)),
    Column("max_input_tokens", "int", "prompt truncation length", _c(lambda c: c.max_input_tokens)),
    Column("max_output_tokens", "int", "tokens generated per prompt (at most)", _c(lambda c: c.max_output_tokens)),
    Column("measurement_config_hash", "str", "16 hex of SHA-256 over the canonical config",
           _r(lambda r: r.measurement_config_hash)),
    Column("measurement_methodology", "str", "which window the headline figures cover: total, steady_state, windowed",
           _r(lambda r: r.measurement_methodology)),
    Column("run_n_requests", "int", "whole run: requests measured", _r(lambda r: r.whole_run.n_requests)),
    Column("run_input_tokens", "int", "whole run: prompt tokens", _r(lambda r: r.whole_run.input_tokens)),
    Column("run_output_tokens", "int", "whole run: generated tokens", _r(lambda r: r.whole_run.output_tokens)),
    Column("run_total_tokens", "int", "whole run: input + output tokens", _r(lambda r: r.whole_run.total_tokens)),
    Column("run_flops", "float", "whole run: estimated FLOPs", _r(lambda r: r.flops.total if r.flops else None)),
    Column("output_tokens", "int", "headline window: output tokens with a timestamp inside it",
           _r(lambda r: r.output_tokens)),
    Column("inference_time_s", "float", "headline window: wall time", _r(lambda r: r.inference_time_s)),
    Column("output_tokens_per_second", "float", "headline window: output tokens / wall time",
           _r(lambda r: r.output_tokens_per_second)),
    Column("energy_j", "float", "headline window: raw energy (null: not measured)", _r(lambda r: r.total_energy_j)),
    Column("energy_adjusted_j", "float", "headline window: raw less idle baseline power x wall time; signed",
           _r(lambda r: r.adjusted_energy_j)),
    Column("energy_per_token_j", "float", "headline window: raw energy / output tokens",
           _r(lambda r: r.energy_per_token_j)),
    Column("energy_per_token_adjusted_j", "float", "headline window: idle-adjusted energy / output tokens; signed",
           _r(lambda r: r.adjusted_energy_per_token_j)),
    Column("energy_unavailable_reason", "str", "why energy is null, when it is", _r(lambda r: r.energy.unavailable_reason)),
    Column("grid_intensity_g_per_kwh", "float", "carbon input: grid intensity, gCO2e/kWh (null: no carbon settings)",
           _r(lambda r: r.config.carbon.grid_intensity_g_per_kwh if r.config.carbon else None)),
    Column("pue", "float", "carbon input: power usage effectiveness applied", _r(lambda r: r.config.carbon.pue
                                                                                  if r.config.carbon else None)),
    Column("emissions_g", "float", "energy_j / 3.6e6 x pue x grid intensity, gCO2e (null: energy or inputs missing)",
           _r(result_emissions_g)),
    Column("emissions_per_token_g", "float", "emissions_g / output tokens", _r(emissions_per_token_g)),
    Column("energy_sampler", "str", "energy source, e.g. nvml_counter, rapl, none", _r(lambda r: r.energy.source)),
    Column("energy_method", "str", "how the energy was obtained, in words", _r(lambda r: r.energy.method)),
    Column("integrated_energy_j", "float", "total window: sampled power integrated (cross-check)",
           _r(lambda r: r.energy.integrated_energy_j)),
    Column("counter_vs_integrated_rel_diff", "float", "(integrated - counter) / counter",
           _r(lambda r: r.energy.counter_vs_integrated_rel_diff)),
    Column("counter_update_period_ms", "float", "measured interval between energy-counter updates",
           _r(lambda r: r.energy.counter_update_period_ms)),
    Column("sample_hz", "float", "power sampling rate", _r(lambda r: r.energy.sample_hz)),
    Column("energy_resolution_ms", "float", "shortest span the energy series resolves (power-sample or "
           "counter-read interval)", _r(lambda r: r.energy.resolution_ms)),
    Column("n_power_samples", "int", "total window: power samples, all devices", _r(lambda r: r.energy.n_power_samples)),
    Column("mean_power_w", "float", "mean power over the headline window",
           _r(lambda r: (w := r.windows.get(r.measurement_methodology)) and w.mean_power_w)),
    Column("baseline_power_w", "float", "idle power, summed over devices", _baseline("power_w")),
    Column("baseline_power_std_w", "float", "standard deviation of the sampled idle power", _baseline("power_std_w")),
    Column("baseline_duration_s", "float", "how long idle power was measured", _baseline("duration_s")),
    Column("baseline_source", "str", "fresh or cached", _baseline("source")),
    Column("baseline_cache_check", "str", "cached baselines: reused (spot-check agreed), remeasured (it drifted) or "
           "measured (none fit these conditions)", _cache_check("outcome")),
    Column("baseline_drift_rel_diff", "float", "spot-check vs cached baseline, (spot - cached) / cached",
           _cache_check("drift_rel")),
    *[Column(f"{w}_window_{a}", k, f"{w} window: {d}", _window(w, attr))
      for w in ("total", "steady_state", "windowed")
      for a, attr, k, d in (("duration_s", "duration_s", "float", "wall time"),
                            ("tokens_per_second", "tokens_per_second", "float", "output tokens / s"),
                            ("energy_j", "energy_j", "float", "raw energy"),
                            ("energy_per_token_j", "energy_per_token_j", "float", "raw energy / output token"))],
    *[Column(f"{p}_{a}", k, f"{p} phase: {d}", _phase(p, attr))
      for p in ("prefill", "decode")
      for a, attr, k, d in (("time_s", "time_s", "float", "wall time the phase ran"),
                            ("energy_j", "energy_j", "float", "energy from counter reads at phase boundaries"),
                            ("energy_share", "energy_share", "float", "share of prefill + decode energy"),
                            ("tokens", "tokens", "int", "prompt (prefill) or generated (decode) tokens"),
                            ("flops", "flops", "float", "estimated floating-point operations"))],
    *[Column(f"{which}_{stat}_ms", "float", f"{label} {stat}", _latency(which, stat))
      for which, label in (("ttft", "time to first token, from submission (queueing included)"),
                           ("queue_time", "queue time, submission to the start of its prefill"),
                           ("batch_ttft", "time to first token from the start of the engine call that carried it"),
                           ("itl", "inter-token latency"))
      for stat in ("mean", "p50", "p90", "p99")],
    Column("total_flops", "float", "headline window: estimated FLOPs of its output tokens",
           _r(lambda r: _headline_flops(r))),
    Column("flops_per_output_token", "float", "headline window: total_flops / output_tokens",
           _r(lambda r: _headline_flops(r) / r.output_tokens
              if _headline_flops(r) is not None and r.output_tokens else None)),
    Column("achieved_flops_per_s", "float", "headline window: total_flops / wall time",
           _r(lambda r: _headline_flops(r) / r.inference_time_s
              if _headline_flops(r) is not None and r.inference_time_s else None)),
    Column("model_load_s", "float", "model load time (outside the window)", _r(lambda r: r.model_load_s)),
    Column("warmup_batches", "int", "batches run before the window", _r(lambda r: r.warmup.batches)),
    Column("warmup_stop_reason", "str", "why warmup stopped", _r(lambda r: r.warmup.stop_reason if r.warmup else None)),
    Column("quality_flags", "str", "measurement-quality codes, ';'-separated", _r(lambda r: ";".join(r.quality_flags))),
    Column("n_warnings", "int", "warnings the runner recorded", _r(lambda r: len(r.warnings))),
    Column("gpu_name", "str", "first GPU's name", _gpu(lambda g: g.name)),
    Column("gpu_count", "int", "GPUs the environment lists", _r(lambda r: len(r.environment.gpus))),
    Column("gpu_power_limit_w", "float", "first GPU's power limit", _gpu(lambda g: g.power_limit_w)),
    Column("driver_version", "str", "NVIDIA driver", _r(lambda r: r.environment.driver_version)),
    Column("cuda_version", "str", "CUDA runtime", _r(lambda r: r.environment.cuda_version)),
    Column("cpu_model", "str", "CPU model", _r(lambda r: r.environment.cpu_model)),
    Column("hostname", "str", "machine that ran it", _r(lambda r: r.environment.hostname)),
    Column("runner_version", "str", "lem runner version", _r(lambda r: r.environment.runner_version)),
    Column("libraries", "str", "backend library versions, name=version;…",
           _r(lambda r: ";".join(f"{k}={v}" for k, v in sorted(r.environment.libraries.items())))),
    Column("image", "str", "container image id (null: local process)", _r(lambda r: r.environment.image)),
    Column("timeseries_file", "str", "power timeseries beside result.json (Parquet), if kept",
           _r(lambda r: r.energy.timeseries_file)),
    # serving scenario (null for offline runs); definitions in docs/method.md, "Serving"
    Column("scenario", "str", "offline | serving", _c(lambda c: c.scenario)),
    Column("arrival", "str", "serving: arrival process", _serving("arrival")),
    Column("offered_rate_per_s", "float", "serving: requests/s asked for", _serving("offered_rate_rps")),
    Column("achieved_rate_per_s", "float", "serving: requests/s sent", _serving("achieved_rate_rps")),
    Column("concurrency_clients", "int", "serving: closed-loop clients", _serving("clients")),
    Column("requests_ok", "int", "serving: requests that completed", _serving("n_ok")),
    Column("requests_failed", "int", "serving: errors + timeouts",
           _r(lambda r: None if r.serving is None else r.serving.n_errors + r.serving.n_timeouts)),
    Column("inflight_mean_requests", "float", "serving: time-weighted mean of requests in flight", _serving("inflight_mean")),
    Column("tpot_p50_ms", "float", "serving: time per output token after the first, median", _latency("tpot", "p50")),
    Column("e2e_p50_ms", "float", "serving: end-to-end latency, median", _latency("e2e", "p50")),
    Column("e2e_p99_ms", "float", "serving: end-to-end latency, 99th percentile", _latency("e2e", "p99")),
    Column("goodput_per_s", "float", "serving: requests/s meeting every SLO bound", _serving("goodput_rps")),
    Column("slo_share", "float", "serving: share of requests meeting the SLO", _serving("good_share")),
    Column("energy_per_good_token_j", "float", "serving: window energy / output tokens of requests meeting the SLO",
           _serving("energy_per_good_token_j")),
    Column("energy_per_request_mean_j", "float", "serving: attributed energy per request, mean",
           _r(lambda r: None if r.serving is None or r.serving.energy_per_request is None
              else r.serving.energy_per_request.mean_j)),
    Column("idle_energy_j", "float", "serving: energy while no request was in flight", _serving("idle_energy_j")),
    Column("server_start_s", "float", "serving: server launch to healthy (outside the window)",
           _serving("server_start_s")),
]

COLUMN_NAMES = [c.name for c in COLUMNS]


def flatten(experiment: Experiment) -> dict[str, Any]:
    """One experiment as a flat row, keyed by ``COLUMN_NAMES`` in order."""
    return {c.name: c.read(experiment) for c in COLUMNS}


def columns_markdown() -> str:
    """The column reference (docs/results-columns.md)."""
    lines = ["# Exported result columns", "",
             "Generated from `llenergymeasure.results.columns.COLUMNS` by "
             "`lem config reference --columns -o docs/results-columns.md`; do not edit by hand.", "",
             "One row per experiment in `lem results export` and `llenergymeasure.load_results()`. Units are in the "
             "names (`_s`, `_ms`, `_j`, `_w`, `_per_s`); a figure that was not measured is null (an empty CSV "
             "cell), never 0. Per-token figures are per output token.", "",
             "| column | type | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{c.name}` | {c.kind} | {c.description.replace('|', '/')} |" for c in COLUMNS]
    lines += ["", "## Power timeseries", "",
              "Where a run kept `timeseries.parquet` (GPU runs with `energy.timeseries: true`), the export writes a "
              "second file, `<name>_timeseries.<format>`: the runner's columns (`t_s` seconds from the start of the "
              "measurement window, negative before it; `device`; `energy_counter_mj`; `power_w`; `temperature_c`; "
              "`sm_clock_mhz`; `memory_used_mib`; `utilization_pct`; `clock_event_reasons`; `memory_clock_mhz`; "
              "`power_limit_w`, the enforced limit) with `experiment_id` "
              "first.", ""]
    return "\n".join(lines)
