"""ExperimentResult: every number one run produced, with how it was obtained.

Energy that was not measured is ``None`` with a reason, never 0. Per-token figures are per *output* token. Every
top-level figure covers the one headline window ``measurement_methodology`` names; counts over the whole run are in
``whole_run``, and each window's own figures in ``windows``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lem_runner.contract.capacity import CapacityResult
from lem_runner.contract.config import SCHEMA_VERSION, ExperimentConfig
from lem_runner.contract.conversation import ConversationFigures
from lem_runner.contract.energy import EnergyResult
from lem_runner.contract.environment import EnvironmentInfo
from lem_runner.contract.host_load import HostLoad
from lem_runner.contract.legacy import OLDER_VERSIONS, upgrade_result
from lem_runner.contract.operating_point import OperatingPoint
from lem_runner.contract.quality import QualityFigures


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LatencyStats(_Record):
    """Distribution of one latency over requests (TTFT) or over token gaps (ITL), in milliseconds."""

    n: int = Field(..., ge=1, description="number of samples the statistics are over")
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float


class WindowFigures(_Record):
    """Throughput and energy over one span of the run: every figure here covers exactly that span."""

    start_offset_s: float = Field(..., description="from the start of the measured run")
    duration_s: float = Field(..., ge=0, description="wall time of the span (summed over its pieces)")
    output_tokens: int = Field(..., ge=0, description="output tokens whose timestamps fall inside the span")
    tokens_per_second: float = Field(..., ge=0, description="output tokens / duration_s")
    energy_j: float | None = Field(None, description="raw energy over the span, summed over devices")
    adjusted_energy_j: float | None = Field(None, description="energy_j - idle baseline power x duration_s; signed")
    energy_per_token_j: float | None = Field(None, description="energy_j / output_tokens")
    adjusted_energy_per_token_j: float | None = Field(None, description="adjusted_energy_j / output_tokens; signed")
    mean_power_w: float | None = Field(None, description="energy_j / duration_s")
    energy_unavailable_reason: str | None = Field(None, description="why energy_j is null, when it is")
    flops: float | None = Field(None, description="estimated FLOPs of the output tokens counted in the span")
    method: str = ""


class PhaseFigures(_Record):
    time_s: float = Field(..., ge=0, description="wall time during which the phase ran")
    energy_j: float | None = None
    energy_share: float | None = Field(None, description="this phase's share of prefill + decode energy")
    flops: float | None = None
    tokens: int = Field(..., ge=0, description="prompt tokens (prefill) or generated tokens (decode)")


class PhaseSplit(_Record):
    """Prefill and decode measured in the same run: time from request timestamps, energy from counter reads."""

    prefill: PhaseFigures
    decode: PhaseFigures
    method: str
    energy_unavailable_reason: str | None = None
    prefill_spans_s: list[tuple[float, float]] | None = Field(
        None, description="prefill spans (start, end) in seconds from the window's start, for plots; None when "
                          "there were more than 1000"
    )


class FlopsResult(_Record):
    """FLOPs of the whole measured run (every request, every token), split by phase."""

    total: float = Field(..., ge=0, description="whole run: prefill + decode")
    prefill: float = Field(..., ge=0)
    decode: float = Field(..., ge=0)
    per_output_token: float | None = Field(None, description="whole run: total / whole_run.output_tokens")
    achieved_flops_per_s: float | None = Field(None, description="whole run: total / total window wall time")
    active_non_embedding_parameters: float | None = Field(
        None, description="N_body of the estimate: non-embedding parameters one token uses (mixture of experts: routed "
                          "expert weights times experts per token / experts)")
    parameter_source: str = ""
    method: str = ""


class WarmupResult(_Record):
    mode: Literal["fixed", "convergence"]
    batches: int = Field(..., ge=0, description="generate calls (serving: requests) run before the window")
    stop_reason: str
    final_cv: float | None = None
    latencies_s: list[float] = Field(default_factory=list)
    method: str = Field("", description="which batches warmup ran and what convergence compared (convergence repeats "
                                        "one batch, so the CV measures the engine settling, not batch content)")


class RunTotals(_Record):
    """Counts over the whole measured run (every measured request, warmup excluded), whatever the headline window."""

    n_requests: int = Field(..., ge=0, description="requests measured")
    input_tokens: int = Field(..., ge=0, description="prompt tokens of those requests")
    output_tokens: int = Field(..., ge=0, description="tokens they generated")
    total_tokens: int = Field(..., ge=0, description="input_tokens + output_tokens")
    duration_s: float = Field(..., ge=0, description="wall time of the total window")
    process_cpu_s: float | None = Field(
        None, ge=0, description="CPU time (user + system, every thread) the runner process used over the total window: "
        "time.process_time() at its end minus at its start. Covers the engine's threads, the sampler thread and lem's "
        "own per-batch work; not engine child processes (vLLM's engine core, a TensorRT-LLM executor), so null for "
        "backends that run one. Divided by output_tokens it is the host CPU cost per token (see method.md, Runner "
        "overhead)")


class EnergyPerRequest(_Record):
    """Energy per answer: the energy attributed to each request (see ServingFigures.energy_attribution_method), over
    the requests that completed (status ok), so one figure per answer whatever its length — beside J/token, since
    answers (a reasoning model's above all) differ in length more than in cost per token; what failed requests drew
    while in flight is ``failed_j``, apart."""

    n: int = Field(..., ge=1, description="ok requests the statistics are over")
    mean_j: float = Field(..., description="mean attributed energy per answer (J)")
    p50_j: float = Field(..., description="median attributed energy per answer (J)")
    p90_j: float = Field(..., description="90th percentile of attributed energy per answer (J)")
    mean_adjusted_j: float | None = Field(
        None, description="mean of the same attribution of idle-adjusted energy over ok requests; signed (negative: "
                          "the baseline exceeds the raw energy, flagged baseline_exceeds_raw)")
    failed_j: float = Field(0.0, ge=0, description="raw energy attributed to requests that failed or timed out "
                                                   "(in flight, so attributed; left out of the statistics)")


class ServingFigures(_Record):
    """The load, its latencies, its energy per request, and goodput against the SLO. Times in the load window:
    from the first request's submission to the last request's end. Latencies are over requests that completed
    (status ok); errors and timeouts are counted, never dropped."""

    arrival: str
    offered_rate_rps: float | None = Field(None, description="rate asked for (open loop), or a trace's requests / "
                                                             "its span; None in a closed loop")
    schedule_rate_rps: float | None = Field(
        None, description="open loop: the schedule's own realised rate, (requests sent - 1) / (last scheduled time - "
                          "first): what this draw of the arrival process offered (a Poisson schedule of 50 requests "
                          "strays from rate by its sampling noise)")
    achieved_rate_rps: float | None = Field(
        None, description="(requests sent - 1) / (last submission - first); compare it with schedule_rate_rps, not "
                          "offered_rate_rps: the generator's own accuracy is its lag (schedule_lag_*)")
    completed_rate_rps: float = Field(..., ge=0, description="requests that completed ok / load window")
    clients: int | None = Field(None, description="closed-loop clients (arrival: concurrency)")
    n_requests: int = Field(..., ge=0, description="requests sent")
    n_ok: int = Field(..., ge=0)
    n_errors: int = Field(..., ge=0, description="refused, reset, HTTP error status or malformed stream")
    n_timeouts: int = Field(..., ge=0, description="no complete response within serving.request_timeout_s")
    error_examples: list[str] = Field(default_factory=list, description="up to 5 distinct error messages")
    duration_s: float = Field(..., ge=0, description="load window: first submission to last end")
    output_tokens_per_s: float = Field(..., ge=0, description="output tokens of ok requests / load window")
    inflight_mean: float = Field(..., ge=0, description="time-weighted mean of requests in flight")
    inflight_median: float = Field(..., ge=0, description="time-weighted median of requests in flight")
    inflight_max: int = Field(..., ge=0)
    inflight_timeline: list[tuple[float, int]] | None = Field(
        None, description="(seconds from the window's start, requests in flight from then on); None over 4000 changes")
    schedule_lag_p50_ms: float | None = Field(
        None, description="open loop: submission (clock read just before the request is handed to the HTTP client) - "
        "scheduled time, median; the load generator's timing error (docs/method.md, Scheduling lag)")
    schedule_lag_p99_ms: float | None = Field(None, description="the same lag's 99th percentile")
    ttft: LatencyStats | None = Field(None, description="submission to first token, queueing included")
    tpot: LatencyStats | None = Field(None, description="(last token - first token) / (output tokens - 1), per request")
    itl: LatencyStats | None = Field(None, description="gap between consecutive streamed chunks, per gap")
    e2e: LatencyStats | None = Field(None, description="submission to the response's end, per request")
    ttfat: LatencyStats | None = Field(
        None, description="time to first answer token: submission to the first streamed chunk of answer text, after "
                          "the reasoning, where the server's reasoning parser streams reasoning apart from the answer "
                          "(vLLM's reasoning field); over ok requests that reached their answer (one that did not "
                          "reason: its first token), in a run where any response streamed reasoning (docs/method.md)")
    ttfat_unavailable_reason: str | None = Field(
        None, description="why ttfat is null: reasoning is not separated from the answer in the stream")
    ttfat_not_reached: int | None = Field(
        None, description="ok requests whose stream carried no answer text (cut by max_tokens while reasoning): "
                          "left out of ttfat")
    reasoning_tokens: int | None = Field(
        None, description="output tokens of ok requests streamed as reasoning: the tokens of every chunk that carried "
                          "reasoning text (the server's usage count per chunk); null where the stream does not "
                          "separate reasoning (ttfat_unavailable_reason)")
    answer_tokens: int | None = Field(
        None, description="output tokens of ok requests streamed as answer (output tokens - reasoning_tokens); null "
                          "where reasoning is not separated")
    reasoning_tokens_mean: float | None = Field(None, description="reasoning_tokens per ok request")
    answer_tokens_mean: float | None = Field(None, description="answer_tokens per ok request")
    prefix_cache_hit_rate: float | None = Field(
        None, ge=0, le=1, description="the server's prefix cache over the load window: increase of its hit-token "
                                      "counter / increase of its queried-token counter, read from GET /metrics just "
                                      "before and just after the window (docs/method.md, Prefix cache hit rate)")
    prefix_cache_queried_tokens: int | None = Field(
        None, description="prompt tokens the server looked up in its prefix cache during the window")
    prefix_cache_hit_tokens: int | None = Field(None, description="of them, tokens found cached")
    prefix_cache_source: str | None = Field(None, description="the counters the hit rate came from")
    prefix_cache_unavailable_reason: str | None = Field(None, description="why the hit rate is null")
    steady_state_definition: str = Field("", description="what the steady state is and how its stationarity is "
                                         "judged (docs/method.md, Serving)")
    steady_state_start_s: float | None = Field(None, description="the first steady span's start, from the window's "
                                               "start")
    steady_state_duration_s: float | None = Field(None, description="the steady spans' summed length (idle gaps and "
                                                  "dips below the level excluded)")
    steady_state_spans_s: list[tuple[float, float]] | None = Field(
        None, description="the steady spans (start, end) from the window's start; None over 1000 spans")
    steady_state_envelope_s: tuple[float, float] | None = Field(
        None, description="first steady span's start to the last one's end, from the window's start: the span the "
                          "stationarity test covers")
    steady_state_quality: Literal["steady", "overloaded", "not_steady"] | None = Field(
        None, description="the stationarity test over the envelope (steady_state_definition); overloaded and "
                          "not_steady are also quality flags")
    steady_state_arrival_rate_rps: float | None = Field(None, description="submissions in the envelope / its length")
    steady_state_completion_rate_rps: float | None = Field(
        None, description="request ends (any status) in the envelope / its length")
    steady_state_inflight_by_quarter: list[float] | None = Field(
        None, description="time-weighted mean in flight in each quarter of the envelope")
    steady_state_ttft_p50_by_quarter_ms: list[float | None] | None = Field(
        None, description="TTFT median of the ok requests submitted in each quarter of the envelope")
    steady_state_output_tokens: int | None = Field(None, description="ok requests' output tokens whose chunk "
                                                   "timestamps fall inside the steady spans")
    steady_state_energy_j: float | None = Field(None, description="raw energy over the steady spans")
    steady_state_adjusted_energy_j: float | None = Field(
        None, description="steady_state_energy_j - baseline power x steady_state_duration_s; signed")
    steady_state_energy_per_token_j: float | None = None
    idle_time_s: float = Field(..., ge=0, description="time inside the window with no request in flight")
    idle_energy_j: float | None = Field(None, description="raw energy while no request was in flight")
    idle_adjusted_energy_j: float | None = Field(
        None, description="idle_energy_j - baseline power x idle_time_s; signed. With the requests' adjusted energy "
                          "(requests.parquet) it adds up to the window's adjusted energy")
    energy_attribution_method: str = Field(
        "", description="how energy per request was attributed: the pieces, the work each request did in them, the "
                        "token-cost assumption and where its prefill interval came from")
    energy_per_request: EnergyPerRequest | None = None
    energy_per_completed_request_j: float | None = Field(
        None, description="raw energy of the whole load window / requests that completed ok (idle and failed "
                          "requests' energy included; no attribution)")
    energy_per_completed_request_adjusted_j: float | None = Field(
        None, description="(window energy - baseline power x window) / ok requests; signed")
    conversations: ConversationFigures | None = Field(
        None, description="multi-turn figures per turn index and per conversation (serving.conversations)")
    slo: dict[str, float] | None = Field(None, description="the bounds (ms) requests were held to")
    n_good: int | None = Field(None, description="ok requests meeting every SLO bound")
    good_share: float | None = Field(None, description="n_good / requests sent")
    goodput_rps: float | None = Field(None, description="n_good / load window")
    good_output_tokens: int | None = None
    energy_per_good_token_j: float | None = Field(
        None, description="raw energy of the whole load window / output tokens of requests that met the SLO")
    energy_per_good_token_adjusted_j: float | None = Field(
        None, description="(window energy - baseline power x window) / output tokens of requests that met the SLO; "
                          "signed")
    good_requests_energy_per_token_j: float | None = Field(
        None, description="energy attributed to the requests that met the SLO / their output tokens")
    energy_unavailable_reason: str | None = None
    server: str = Field("", description="what served: the command's module, or the user's endpoint")
    server_start_s: float | None = Field(None, description="launch to a healthy health route; outside the window")
    server_log: str | None = Field(None, description="the server's output beside result.json")
    capacity: CapacityResult | None = Field(
        None, description="serving.capacity's search: the capacity, every probe, J per good token at capacity; the "
                          "other serving figures are the capacity probe's (docs/method.md, capacity search)")


class EngineUse(_Record):
    """The engine a run was measured on: loaded for it (fresh) or kept from earlier runs of its engine session."""

    fresh: bool = Field(..., description="true: this run's runner loaded the engine for it (model_load_s is that "
                        "load); false: the engine was kept loaded from an earlier run of the same engine session")
    runs_served: int = Field(..., ge=0, description="runs the engine had measured before this one (0 when fresh)")
    identity: str = Field(..., description="the engine identity (16 hex over the engine-defining config fields, "
                          "lem_runner.contract.engine); runs sharing an engine share it")
    load_s: float = Field(..., ge=0, description="how long the engine took to load, when it was loaded (by the "
                            "session's first run); outside every window")
    session: str | None = Field(None, description="the engine session's id (None: a runner started for this run "
                                "alone)")
    pid: int = Field(..., description="the runner process's id (inside a container: the container's pid space)")
    server_pid: int | None = Field(None, description="serving: the server process's id (the runner's child; runs "
                                   "that shared a server share it); null offline")
    reset: list[str] = Field(default_factory=list, description="what was emptied before this run on a kept engine, "
                             "so that nothing of the last run could serve it (vLLM: the prefix cache, 'POST "
                             "/reset_prefix_cache' for a server; 'reset_prefix_cache()' offline); empty when fresh or "
                             "when the engine keeps nothing between requests")


class ExperimentResult(_Record):
    """The result of one experiment run: written by the runner as ``result.json``."""

    schema_version: str = SCHEMA_VERSION
    experiment_id: str
    measurement_config_hash: str = Field(..., pattern=r"^[0-9a-f]{16}$")
    config: ExperimentConfig
    model_path: str = Field(..., description="where the runner loaded the model from")
    measurement_methodology: Literal["total", "steady_state", "windowed"] = "total"
    aggregation: Literal["single_run"] = Field(
        "single_run", description="how the figures combine runs: one process, one window, summed over devices"
    )

    # headline: every figure below covers the one window measurement_methodology names
    inference_time_s: float = Field(..., ge=0, description="headline window: wall time")
    output_tokens: int = Field(..., ge=0, description="headline window: output tokens with a timestamp inside it")
    output_tokens_per_second: float = Field(..., ge=0, description="headline window: output tokens / wall time")
    total_energy_j: float | None = Field(
        None, description="headline window: raw energy, summed over devices; null when not measured")
    adjusted_energy_j: float | None = Field(
        None, description="headline window: raw - idle baseline power x wall time; signed (negative: the baseline "
                          "exceeds the raw energy, flagged baseline_exceeds_raw)")
    energy_per_token_j: float | None = Field(
        None, description="headline window: total_energy_j / output_tokens")
    adjusted_energy_per_token_j: float | None = Field(
        None, description="headline window: adjusted_energy_j / output_tokens; signed")
    whole_run: RunTotals = Field(..., description="counts over the whole measured run, whatever the headline window")
    flops: FlopsResult | None = Field(
        None, description="FLOPs of the whole run (exported as run_flops, run_flops_per_output_token, "
                          "run_achieved_flops_per_s); the headline window's are windows[measurement_methodology].flops "
                          "(exported as headline_flops, headline_flops_per_output_token, headline_achieved_flops_per_s)")
    windows: dict[str, WindowFigures] = Field(
        default_factory=dict, description="every span computed; the headline figures are measurement_methodology's"
    )
    phases: PhaseSplit | None = None

    ttft: LatencyStats | None = Field(
        None, description="time to first token per request, from its submission to its first token: queueing "
                          "included, the same definition for every backend, as vllm bench serve measures it. Offline, "
                          "submission is the start of the measured pass over the prompt set (every prompt submitted "
                          "at once); serving, the load generator's send of that request (= serving.ttft)")
    queue_time: LatencyStats | None = Field(
        None, description="per request, submission to the start of its prefill (queue_time_method says how known)")
    queue_time_method: str = Field("", description="where the prefill starts behind queue_time came from")
    batch_ttft: LatencyStats | None = Field(
        None, description="per request, first token - start of the generate call that carried it: for PyTorch its own "
                          "batch's start (the batch's prefill latency, earlier batches excluded); for engines given the "
                          "whole set in one call (vLLM, TensorRT-LLM) it equals ttft up to tokenisation")
    itl: LatencyStats | None = Field(
        None, description="inter-token latency: the gap between consecutive distinct token timestamps of a request (an "
                          "engine step; tokens one step emits together, as in speculative decoding, count once), per "
                          "gap; the serving definition (per streamed chunk), as vllm bench serve measures it")
    tpot: LatencyStats | None = Field(
        None, description="time per output token after the first, per request: (last token - first token) / (output "
                          "tokens - 1), requests with two or more tokens; as serving.tpot and vllm bench serve")
    latency_definitions: dict[str, str] = Field(
        default_factory=dict, description="the definition each latency figure was computed by (itl, tpot)")
    latency_method: str = Field("", description="how token timestamps were taken for TTFT and ITL")
    energy: EnergyResult
    batch_size: int | None = Field(
        None, description="the batch as the backend applied it, one figure across backends: pytorch the prompts per "
        "generate() call (pytorch.batch_size); vllm the most sequences scheduled together (max_num_seqs as the engine "
        "resolved it, read back from its scheduler config); tensorrt the most requests batched together "
        "(max_batch_size as the LLM resolved it); serving: the cap the server was started with. Null when the "
        "engine chose it and did not report it, or the backend has no batch knob")
    batch_knob: str | None = Field(
        None, description="the config field batch_size comes from (e.g. 'vllm.max_num_seqs'); null for a backend "
        "without one")
    model_load_s: float = Field(..., ge=0, description="model load (serving: server start) wall time, outside the "
                                "measurement window; 0 for a run on a reused engine (engine.load_s is the engine's "
                                "own load)")
    engine: EngineUse | None = Field(None, description="fresh or reused engine, and how many runs it had served")
    warmup: WarmupResult = Field(..., description="what ran before the window; excluded from every figure")
    backend_details: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    engine_settings: dict[str, Any] = Field(
        default_factory=dict, description="what the engine used: the arguments lem passed it (declared fields and "
        "pass-through keys) and the values read back from the engine after loading (vLLM: its config objects; "
        "transformers: the loaded model, the KV-cache class of the first generate, compiled graphs)")
    warnings: list[str] = Field(default_factory=list)
    quality_flags: list[str] = Field(default_factory=list, description="codes of the measurement-quality warnings")
    host_load: HostLoad | None = Field(None, description="the host's CPU load over the window (other processes' CPU, "
                                       "steal, load average); contended runs are flagged cpu_contention. Null where "
                                       "/proc is not readable")
    quality: QualityFigures | None = Field(None, description="quality figures taken after the energy window "
                                           "(config quality); null when none was asked for")
    serving: ServingFigures | None = Field(None, description="scenario serving: load, latencies, energy per request, "
                                                             "SLO goodput (requests.parquet holds each request)")
    environment: EnvironmentInfo
    operating_point: OperatingPoint | None = Field(
        None, description="GPU power limit and clocks: set by the controller (gpu: section) and observed in the window")
    start_time: datetime
    end_time: datetime

    @property
    def headline(self) -> WindowFigures | None:
        """The headline window's own figures (its FLOPs, mean power, method), or None for a result without it."""
        return self.windows.get(self.measurement_methodology)

    @model_validator(mode="before")
    @classmethod
    def _read_older_schemas(cls, data: object) -> object:
        """A result.json written before schema 1.2 (1.0 and 0.x: spans mixed at the top level; 1.1: duplicate fields)
        is read in today's shape."""
        if isinstance(data, dict) and data.get("schema_version") in OLDER_VERSIONS:
            return upgrade_result(data)
        return data
