"""The catalogue of figures: every number lem reads out of a result, listed once, under the one name it has
everywhere — the exported column, the study aggregate (``<key>_mean`` …), ``lem results compare`` rows, the HTML
report and the plots.

Each entry says where the figure lives in ``result.json`` (``path``, a dotted path; when the result schema renames a
field, that one line changes), its unit, what it means and which direction is better. The order here is the order
of the exported columns (results/columns.py adds the identity, config and environment columns around them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from lem_runner.contract import ExperimentResult

from llenergymeasure.results.carbon import emissions_per_token_g, result_emissions_g

Kind = Literal["str", "int", "float", "bool", "datetime"]
Better = Literal["higher", "lower"] | None


def at(obj: Any, path: str) -> Any:
    """``obj`` followed along a dotted path (attributes, or keys of a dict); None as soon as a step is missing."""
    for part in path.split("."):
        if obj is None:
            return None
        obj = obj.get(part) if isinstance(obj, dict) else getattr(obj, part, None)
    return obj


@dataclass(frozen=True)
class Metric:
    key: str
    #: where it is in the result: a dotted path, or several tried in turn (the first that is not null)
    path: str | tuple[str, ...] | None
    unit: str
    description: str
    better: Better = None
    kind: Kind = "float"
    #: the short row name in tables, with its unit (defaults to the key)
    label: str | None = None
    #: how to compute it when it is not a field of the result (``path`` is then None)
    compute: Callable[[ExperimentResult], Any] | None = None

    def read(self, result: ExperimentResult) -> Any:
        """The figure in one result; None when it was not measured."""
        if self.compute is not None:
            return self.compute(result)
        paths = (self.path,) if isinstance(self.path, str) else self.path or ()
        for p in paths:
            value = at(result, p)
            if value is not None:
                return value
        return None

    @property
    def title(self) -> str:
        return self.label or self.key


def _headline(r: ExperimentResult, figure: str) -> Any:
    """A figure of the headline window (the one the methodology names)."""
    return at(r, f"windows.{r.measurement_methodology}.{figure}")


def _per(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _headline_power(r: ExperimentResult) -> float | None:
    return _headline(r, "mean_power_w")


def _requests_failed(r: ExperimentResult) -> int | None:
    return None if r.serving is None else r.serving.n_errors + r.serving.n_timeouts


def _capacity_clients(r: ExperimentResult) -> int | None:
    c = r.serving.capacity if r.serving is not None else None
    return int(c.capacity) if c is not None and c.knob == "concurrency" and c.capacity is not None else None


_LATENCIES = (("ttft", "time to first token, from submission (queueing included)", "TTFT"),
              ("queue_time", "queue time, submission to the start of its prefill", "queue"),
              ("batch_ttft", "time to first token from the start of the engine call that carried it", "batch TTFT"),
              ("itl", "inter-token latency, the gap between a request's steps (offline) or streamed chunks (serving)",
               "ITL"),
              ("tpot", "time per output token after the first, per request: (last - first token) / (tokens - 1)",
               "TPOT"))
_WINDOW_FIGURES = (("duration_s", "s", "wall time", None),
                   ("tokens_per_second", "tok/s", "output tokens / s", "higher"),
                   ("energy_j", "J", "raw energy", "lower"),
                   ("energy_per_token_j", "J", "raw energy / output token", "lower"))
_PHASE_FIGURES = (("time_s", "s", "float", "wall time the phase ran"),
                  ("energy_j", "J", "float", "energy over the phase's spans from the counter series (counter reads "
                   "apportioned by sampled power; null without interior reads)"),
                  ("energy_share", "", "float", "share of prefill + decode energy"),
                  ("tokens", "", "int", "prompt (prefill) or generated (decode) tokens"),
                  ("flops", "FLOP", "float", "estimated floating-point operations"))

FIGURES: list[Metric] = [
    Metric("run_n_requests", "whole_run.n_requests", "", "whole run: requests measured", kind="int"),
    Metric("run_input_tokens", "whole_run.input_tokens", "", "whole run: prompt tokens", kind="int"),
    Metric("run_output_tokens", "whole_run.output_tokens", "", "whole run: generated tokens", kind="int"),
    Metric("run_total_tokens", "whole_run.total_tokens", "", "whole run: input + output tokens", kind="int"),
    Metric("run_flops", "flops.total", "FLOP", "whole run: estimated FLOPs (result.json flops.total)"),
    Metric("run_flops_per_output_token", "flops.per_output_token", "FLOP",
           "whole run: run_flops / whole-run output tokens (result.json flops.per_output_token)"),
    Metric("run_achieved_flops_per_s", "flops.achieved_flops_per_s", "FLOP/s",
           "whole run: run_flops / total window wall time (result.json flops.achieved_flops_per_s)"),
    Metric("output_tokens", "output_tokens", "", "headline window: output tokens with a timestamp inside it",
           kind="int"),
    Metric("inference_time_s", "inference_time_s", "s", "headline window: wall time", "lower",
           label="window (s)"),
    Metric("output_tokens_per_second", "output_tokens_per_second", "tok/s",
           "headline window: output tokens / wall time", "higher", label="throughput (tok/s)"),
    Metric("energy_j", "total_energy_j", "J", "headline window: raw energy (null: not measured)", "lower",
           label="energy (J)"),
    Metric("energy_adjusted_j", "adjusted_energy_j", "J",
           "headline window: raw less idle baseline power x wall time; signed", "lower", label="idle-adj. energy (J)"),
    Metric("energy_per_token_j", "energy_per_token_j", "J", "headline window: raw energy / output tokens",
           "lower", label="energy/token (J)"),
    Metric("energy_per_token_adjusted_j", "adjusted_energy_per_token_j", "J",
           "headline window: idle-adjusted energy / output tokens; signed", "lower", label="idle-adj. J/token"),
    Metric("emissions_g", None, "gCO2e",
           "energy_j / 3.6e6 x pue x grid intensity, gCO2e (null: energy or inputs missing)", "lower",
           label="emissions (gCO2e)", compute=result_emissions_g),
    Metric("emissions_per_token_g", None, "gCO2e", "emissions_g / output tokens", "lower",
           compute=emissions_per_token_g),
    Metric("integrated_energy_j", "energy.integrated_energy_j", "J",
           "total window: sampled power integrated (cross-check)"),
    Metric("counter_vs_integrated_rel_diff", "energy.counter_vs_integrated_rel_diff", "",
           "(integrated - counter) / counter"),
    Metric("counter_update_period_ms", "energy.counter_update_period_ms", "ms",
           "measured interval between energy-counter updates"),
    Metric("sample_hz", "energy.sample_hz", "Hz", "power sampling rate"),
    Metric("energy_resolution_ms", "energy.resolution_ms", "ms",
           "shortest span the energy series resolves (power-sample or counter-read interval)"),
    Metric("n_power_samples", "energy.n_power_samples", "", "total window: power samples, all devices", kind="int"),
    Metric("mean_power_w", None, "W", "mean power over the headline window", compute=_headline_power),
    Metric("baseline_power_w", "energy.baseline.power_w", "W", "idle power, summed over devices"),
    Metric("baseline_power_std_w", "energy.baseline.power_std_w", "W", "standard deviation of the sampled idle power"),
    Metric("baseline_duration_s", "energy.baseline.duration_s", "s", "how long idle power was measured"),
    Metric("baseline_drift_rel_diff", "energy.baseline.cache_check.drift_rel", "",
           "spot-check vs cached baseline, (spot - cached) / cached"),
    *[Metric(f"{w}_window_{a}", f"windows.{w}.{a}", unit, f"{w} window: {d}", better)
      for w in ("total", "steady_state", "windowed") for a, unit, d, better in _WINDOW_FIGURES],
    *[Metric(f"{p}_{a}", f"phases.{p}.{a}", unit, f"{p} phase: {d}", kind=kind)
      for p in ("prefill", "decode") for a, unit, kind, d in _PHASE_FIGURES],
    *[Metric(f"{which}_{stat}_ms", (f"{which}.{stat}_ms", f"serving.{which}.{stat}_ms"), "ms", f"{d} {stat}", "lower",
             label=f"{short} {stat} (ms)")
      for which, d, short in _LATENCIES for stat in ("mean", "p50", "p90", "p99")],
    Metric("headline_flops", None, "FLOP",
           "headline window: estimated FLOPs of its output tokens (result.json windows[measurement_methodology].flops)",
           compute=lambda r: _headline(r, "flops")),
    Metric("headline_flops_per_output_token", None, "FLOP", "headline window: headline_flops / output_tokens",
           compute=lambda r: _per(_headline(r, "flops"), r.output_tokens)),
    Metric("headline_achieved_flops_per_s", None, "FLOP/s", "headline window: headline_flops / wall time",
           compute=lambda r: _per(_headline(r, "flops"), r.inference_time_s)),
    Metric("model_load_s", "model_load_s", "s", "model load time (outside the window)", "lower"),
    Metric("warmup_batches", "warmup.batches", "", "batches run before the window", kind="int"),
    # serving scenario (null for offline runs); definitions in docs/method.md, "Serving"
    Metric("offered_rate_per_s", "serving.offered_rate_rps", "req/s", "serving: requests/s asked for"),
    Metric("schedule_rate_per_s", "serving.schedule_rate_rps", "req/s",
           "serving: the schedule's own realised rate, (sent - 1) / (last scheduled - first)"),
    Metric("achieved_rate_per_s", "serving.achieved_rate_rps", "req/s", "serving: requests/s sent",
           label="achieved rate (req/s)"),
    Metric("concurrency_clients", "serving.clients", "", "serving: closed-loop clients", kind="int"),
    Metric("requests_ok", "serving.n_ok", "", "serving: requests that completed", kind="int"),
    Metric("requests_failed", None, "", "serving: errors + timeouts", "lower", kind="int", compute=_requests_failed),
    Metric("inflight_mean_requests", "serving.inflight_mean", "", "serving: time-weighted mean of requests in flight"),
    Metric("e2e_p50_ms", "serving.e2e.p50_ms", "ms", "serving: end-to-end latency, median", "lower"),
    Metric("e2e_p99_ms", "serving.e2e.p99_ms", "ms", "serving: end-to-end latency, 99th percentile", "lower"),
    Metric("goodput_per_s", "serving.goodput_rps", "req/s", "serving: requests/s meeting every SLO bound", "higher",
           label="goodput (req/s)"),
    Metric("slo_share", "serving.good_share", "", "serving: share of requests meeting the SLO", "higher"),
    Metric("energy_per_good_token_j", "serving.energy_per_good_token_j", "J",
           "serving: window energy / output tokens of requests meeting the SLO", "lower",
           label="J/good token"),
    Metric("energy_per_request_mean_j", "serving.energy_per_request.mean_j", "J",
           "serving: energy per answer (attributed energy per completed request), mean", "lower",
           label="J/answer"),
    Metric("energy_per_request_p50_j", "serving.energy_per_request.p50_j", "J",
           "serving: energy per answer, median", "lower"),
    Metric("energy_per_request_p90_j", "serving.energy_per_request.p90_j", "J",
           "serving: energy per answer, 90th percentile", "lower"),
    Metric("ttfat_p50_ms", "serving.ttfat.p50_ms", "ms", "serving: time to first answer token (after the "
           "reasoning, where the stream separates it), median", "lower", label="TTFAT p50 (ms)"),
    Metric("prefix_cache_hit_share", "serving.prefix_cache_hit_rate", "", "serving: the server's prefix-cache hit "
           "rate over the window, a share (cached / looked-up prompt tokens, from its /metrics counters)", "higher"),
    Metric("energy_per_completed_request_j", "serving.energy_per_completed_request_j", "J",
           "serving: window energy / requests completed ok", "lower"),
    Metric("idle_energy_j", "serving.idle_energy_j", "J", "serving: energy while no request was in flight"),
    Metric("server_start_s", "serving.server_start_s", "s", "serving: server launch to healthy (outside the window)",
           "lower"),
    # task accuracy (config quality.task; docs/method.md, "Task accuracy"), scored after the energy window
    Metric("task_accuracy", "quality.task.accuracy", "", "quality.task: acc, share of items whose answer has the "
           "highest summed continuation log-likelihood", "higher", label="task acc"),
    Metric("task_accuracy_norm", "quality.task.accuracy_norm", "", "quality.task: acc_norm, the same with each "
           "choice's log-likelihood divided by its length in characters", "higher"),
    Metric("task_accuracy_stderr", "quality.task.stderr", "", "quality.task: standard error of acc (sample stdev / "
           "sqrt(n))"),
    Metric("task_items_count", "quality.task.n_items", "", "quality.task: items scored", kind="int"),
    Metric("task_duration_s", "quality.task.duration_s", "s", "quality.task: scoring wall time, after the energy "
           "window"),
    # output fidelity against the study's reference point and perplexity (docs/method.md, "Output fidelity",
    # "Perplexity"), taken after the energy window
    Metric("fidelity_exact_match", "quality.fidelity.exact_match", "", "quality.fidelity: share of requests whose "
           "generated text equals the reference's", "higher", label="exact match"),
    Metric("fidelity_agreement", "quality.fidelity.agreement", "", "quality.fidelity: mean share of the reference's "
           "tokens matched before the first divergence", "higher", label="agreement"),
    Metric("fidelity_first_divergence_mean", "quality.fidelity.first_divergence_mean", "tokens", "quality.fidelity: "
           "mean position of the first token that differs from the reference's"),
    Metric("fidelity_kl_mean_nats", "quality.fidelity.kl_mean_nats", "nats", "quality.fidelity: mean teacher-forced "
           "KL(reference || this) of the next-token distributions along the reference's tokens", "lower",
           label="KL (nats)"),
    Metric("fidelity_kl_tokens", "quality.fidelity.kl_tokens", "", "quality.fidelity: positions the KL mean is "
           "over", kind="int"),
    Metric("fidelity_duration_s", "quality.fidelity.duration_s", "s", "quality.fidelity: comparison wall time, "
           "after the energy window"),
    Metric("perplexity", "quality.perplexity.perplexity", "", "quality.perplexity: exp(-mean token log-likelihood) "
           "on the bundled text", "lower"),
    Metric("perplexity_tokens", "quality.perplexity.tokens", "", "quality.perplexity: tokens scored", kind="int"),
    Metric("perplexity_duration_s", "quality.perplexity.duration_s", "s", "quality.perplexity: scoring wall time, "
           "after the energy window"),
    # serving.capacity's search (null without one); definitions in docs/method.md, "Serving", capacity search
    Metric("capacity_rate_per_s", "serving.capacity.capacity_rps", "req/s",
           "capacity search: the offered rate at capacity, the highest probed rate that passed (closed loop: the "
           "achieved rate at the capacity's clients)", "higher", label="capacity (req/s)"),
    Metric("capacity_clients", None, "", "capacity search, closed loop: the most clients that passed", "higher",
           kind="int", compute=_capacity_clients),
    Metric("capacity_found", "serving.capacity.found", "", "capacity search: bracketed | at_least_max (the "
           "bracket's high end passed) | below_min (its low end failed; capacity null)", kind="str"),
    Metric("capacity_goodput_per_s", "serving.capacity.goodput_rps", "req/s",
           "capacity search: goodput of the capacity probe", "higher"),
    Metric("capacity_energy_per_good_token_j", "serving.capacity.energy_per_good_token_j", "J",
           "capacity search: the capacity probe's window energy / output tokens of its requests meeting the SLO",
           "lower", label="J/good token at capacity"),
    Metric("capacity_energy_per_request_j", "serving.capacity.energy_per_request_j", "J",
           "capacity search: the capacity probe's window energy / its requests completed ok", "lower"),
    Metric("capacity_probes", None, "", "capacity search: probes run", kind="int",
           compute=lambda r: len(r.serving.capacity.probes) if r.serving and r.serving.capacity else None),
    # serving.conversations (null without it); definitions in docs/method.md, "Serving", multi-turn conversations
    Metric("conversations_complete", "serving.conversations.n_complete", "", "multi-turn: conversations whose every "
           "turn completed", kind="int"),
    Metric("conversation_duration_mean_s", "serving.conversations.duration_mean_s", "s",
           "multi-turn: mean span of a complete conversation, first submission to last answer's end (think time in)"),
    Metric("energy_per_conversation_mean_j", "serving.conversations.energy_per_conversation_mean_j", "J",
           "multi-turn: mean over complete conversations of the sum of their requests' attributed energy", "lower",
           label="J/conversation"),
    Metric("think_lag_p99_ms", "serving.conversations.think_lag_p99_ms", "ms", "multi-turn: p99 of a later "
           "turn's submission - (previous answer's end + think time)", "lower"),
]

METRICS: dict[str, Metric] = {m.key: m for m in FIGURES}

#: the figures a study aggregates per point over its cycles (mean, std, 95 % CI, CV, n), in table order
STUDY_METRICS: tuple[str, ...] = ("output_tokens_per_second", "ttft_p50_ms", "itl_p50_ms", "energy_j",
                                  "energy_per_token_j", "energy_per_token_adjusted_j", "inference_time_s",
                                  "emissions_g", "achieved_rate_per_s", "goodput_per_s", "tpot_p50_ms",
                                  "energy_per_good_token_j", "capacity_rate_per_s",
                                  "capacity_energy_per_good_token_j", "fidelity_agreement", "fidelity_kl_mean_nats",
                                  "perplexity", "task_accuracy")
#: the quality figures among them (config quality): null without a quality section, so shown only where a run has them
QUALITY_STUDY_METRICS: tuple[str, ...] = ("fidelity_agreement", "fidelity_kl_mean_nats", "perplexity",
                                          "task_accuracy")
#: the serving run's figures among them: null for offline runs, so a table shows them only where a run has them
SERVING_STUDY_METRICS: tuple[str, ...] = ("achieved_rate_per_s", "goodput_per_s", "tpot_p50_ms",
                                          "energy_per_good_token_j", "capacity_rate_per_s",
                                          "capacity_energy_per_good_token_j")
#: study figures that only rescale another (their spread is that one's): no CV warning of their own
RESCALED = {"emissions_g"}
#: names study summaries written by lem 0.1 used, read as today's
LEGACY_NAMES = {"tokens_per_second": "output_tokens_per_second", "total_inference_time_sec": "inference_time_s",
                # before issue 24 the headline window's FLOPs had names that result.json uses for the whole run's
                "total_flops": "headline_flops", "flops_per_output_token": "headline_flops_per_output_token",
                "achieved_flops_per_s": "headline_achieved_flops_per_s"}


def metric(key: str) -> Metric:
    return METRICS[LEGACY_NAMES.get(key, key)]
