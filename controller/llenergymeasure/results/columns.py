"""The flat row of one experiment: stable snake_case column names with the unit in the name (_s, _ms, _j, _w,
_per_s), the same for CSV, Parquet, JSON lines and ``load_results``. Adding a column is fine; renaming one breaks
people's notebooks, so ``COLUMNS`` is the contract (docs/results-columns.md is generated from it).

A figure that was not measured is null (an empty CSV cell), never 0; a failed run keeps its identity and config
columns and says why in ``error``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lem_runner.contract import ExperimentConfig, ExperimentResult

from llenergymeasure.results.carbon import energy_scope
from llenergymeasure.results.discover import Experiment
from llenergymeasure.results.metrics import METRICS, Kind


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


def _baseline(attr: str) -> Callable[[Experiment], Any]:
    return _r(lambda r: None if r.energy.baseline is None else getattr(r.energy.baseline, attr))


def _cache_check(attr: str) -> Callable[[Experiment], Any]:
    def read(r: ExperimentResult) -> Any:
        check = r.energy.baseline.cache_check if r.energy.baseline is not None else None
        return None if check is None else getattr(check, attr)
    return _r(read)


def _gpu(read: Callable[[Any], Any]) -> Callable[[Experiment], Any]:
    return _r(lambda r: read(r.environment.gpus[0]) if r.environment.gpus else None)


def _fig(*keys: str) -> list[Column]:
    """The catalogue's figures (results/metrics.py), as columns of the same names."""
    return [Column(m.key, m.kind, m.description, _r(m.read)) for m in (METRICS[k] for k in keys)]


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
    *_fig("run_n_requests", "run_input_tokens", "run_output_tokens", "run_total_tokens", "run_flops",
          "run_flops_per_output_token", "run_achieved_flops_per_s", "output_tokens",
          "inference_time_s", "output_tokens_per_second", "energy_j", "energy_adjusted_j", "energy_per_token_j",
          "energy_per_token_adjusted_j"),
    Column("energy_unavailable_reason", "str", "why energy is null, when it is", _r(lambda r: r.energy.unavailable_reason)),
    Column("grid_intensity_g_per_kwh", "float", "carbon input: grid intensity, gCO2e/kWh (null: no carbon settings)",
           _r(lambda r: r.config.carbon.grid_intensity_g_per_kwh if r.config.carbon else None)),
    Column("pue", "float", "carbon input: power usage effectiveness applied", _r(lambda r: r.config.carbon.pue
                                                                                  if r.config.carbon else None)),
    *_fig("emissions_g", "emissions_per_token_g"),
    Column("energy_scope", "str", "what energy_j, and so emissions_g, cover: GPU only (NVML), the CPU package (RAPL); "
           "never host DRAM or the rest of the server (null: no energy source)", _r(energy_scope)),
    Column("energy_sampler", "str", "energy source, e.g. nvml_counter, rapl, none", _r(lambda r: r.energy.source)),
    Column("energy_method", "str", "how the energy was obtained, in words", _r(lambda r: r.energy.method)),
    *_fig("integrated_energy_j", "counter_vs_integrated_rel_diff", "counter_update_period_ms", "sample_hz",
          "energy_resolution_ms", "n_power_samples", "mean_power_w", "baseline_power_w", "baseline_power_std_w",
          "baseline_duration_s"),
    Column("baseline_source", "str", "fresh or cached", _baseline("source")),
    Column("baseline_cache_check", "str", "cached baselines: reused (spot-check agreed), remeasured (it drifted) or "
           "measured (none fit these conditions)", _cache_check("outcome")),
    *_fig("baseline_drift_rel_diff"),
    *_fig(*(f"{w}_window_{a}" for w in ("total", "steady_state", "windowed")
            for a in ("duration_s", "tokens_per_second", "energy_j", "energy_per_token_j"))),
    *_fig(*(f"{p}_{a}" for p in ("prefill", "decode") for a in ("time_s", "energy_j", "energy_share", "tokens", "flops"))),
    *_fig(*(f"{which}_{stat}_ms" for which in ("ttft", "queue_time", "batch_ttft", "itl", "tpot")
            for stat in ("mean", "p50", "p90", "p99"))),
    *_fig("headline_flops", "headline_flops_per_output_token", "headline_achieved_flops_per_s", "model_load_s",
          "warmup_batches"),
    # the engine a run measured on (engine sessions; docs/method.md "Engine sessions"); null for results before them
    Column("engine_fresh", "bool", "true: the engine (or server) was loaded for this run; false: kept from an earlier "
           "run of its engine session", _r(lambda r: r.engine.fresh if r.engine else None)),
    Column("engine_runs_served", "int", "runs the engine had measured before this one (0 when fresh)",
           _r(lambda r: r.engine.runs_served if r.engine else None)),
    Column("engine_load_s", "float", "the engine's own load (serving: server start-up), by its session's first run",
           _r(lambda r: r.engine.load_s if r.engine else None)),
    Column("engine_session", "str", "the engine session's id (null: a runner for this run alone)",
           _r(lambda r: r.engine.session if r.engine else None)),
    Column("process_cpu_s", "float", "CPU time (user + system) of the runner process over the total window (null: "
           "the engine runs in child processes, e.g. vLLM's engine core)", _r(lambda r: r.whole_run.process_cpu_s)),
    Column("warmup_stop_reason", "str", "why warmup stopped", _r(lambda r: r.warmup.stop_reason if r.warmup else None)),
    Column("quality_flags", "str", "measurement-quality codes, ';'-separated", _r(lambda r: ";".join(r.quality_flags))),
    # the host's CPU load over the window (docs/method.md "Host load"); null for results before it or without /proc
    Column("host_other_cpu_share", "float", "share of the run's CPUs other processes used over the window (>= 0.25: "
           "flagged cpu_contention)", _r(lambda r: r.host_load.other_cpu_share if r.host_load else None)),
    Column("host_steal_share", "float", "share of the run's CPUs' time the hypervisor stole over the window (>= 0.05: "
           "flagged cpu_contention)", _r(lambda r: r.host_load.steal_share if r.host_load else None)),
    Column("host_load_avg_1m_count", "float", "1-minute load average (runnable + waiting tasks) when the window closed",
           _r(lambda r: r.host_load.load_avg_1m_end if r.host_load else None)),
    Column("host_cpus", "int", "CPUs the run could use (its affinity)", _r(lambda r: r.host_load.cpus if r.host_load
                                                                            else None)),
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
    Column("arrival", "str", "serving: arrival process", _r(lambda r: None if r.serving is None else r.serving.arrival)),
    *_fig("offered_rate_per_s", "schedule_rate_per_s", "achieved_rate_per_s", "concurrency_clients", "requests_ok",
          "requests_failed", "inflight_mean_requests", "e2e_p50_ms", "e2e_p99_ms", "goodput_per_s",
          "slo_share", "energy_per_good_token_j", "energy_per_request_mean_j", "energy_per_request_p50_j",
          "energy_per_request_p90_j", "energy_per_completed_request_j", "ttfat_p50_ms", "prefix_cache_hit_share",
          "idle_energy_j", "server_start_s"),
    # task accuracy (config quality.task); definitions in docs/method.md, "Task accuracy"
    Column("task_name", "str", "quality.task: the task (JSONL stem, or the lm-eval YAML's task)",
           _r(lambda r: r.quality.task.name if r.quality and r.quality.task else None)),
    Column("task_scorer", "str", "quality.task: builtin | lm_eval",
           _r(lambda r: r.quality.task.scorer if r.quality and r.quality.task else None)),
    *_fig("task_accuracy", "task_accuracy_norm", "task_accuracy_stderr", "task_items_count", "task_duration_s"),
    # output fidelity and perplexity (config quality.reference, quality.perplexity); docs/method.md
    Column("fidelity_reference", "str", "quality.fidelity: the reference point (its label in the study)",
           _r(lambda r: r.quality.fidelity.reference if r.quality and r.quality.fidelity else None)),
    *_fig("fidelity_exact_match", "fidelity_agreement", "fidelity_first_divergence_mean", "fidelity_kl_mean_nats",
          "fidelity_kl_tokens"),
    Column("fidelity_kl_source", "str", "quality.fidelity: 'full distribution' or 'top-k N + remainder'",
           _r(lambda r: r.quality.fidelity.kl_source if r.quality and r.quality.fidelity else None)),
    *_fig("fidelity_duration_s", "perplexity", "perplexity_tokens"),
    Column("perplexity_text", "str", "quality.perplexity: the bundled text scored",
           _r(lambda r: r.quality.perplexity.text if r.quality and r.quality.perplexity else None)),
    *_fig("perplexity_duration_s"),
    # serving.capacity's search (null without one): capacity per point of a sweep
    *_fig("capacity_found", "capacity_rate_per_s", "capacity_clients", "capacity_goodput_per_s",
          "capacity_energy_per_good_token_j", "capacity_energy_per_request_j", "capacity_probes"),
    # serving.conversations (null without it): per conversation; per turn index in result.json's by_turn
    *_fig("conversations_complete", "conversation_duration_mean_s", "energy_per_conversation_mean_j",
          "think_lag_p99_ms"),
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
