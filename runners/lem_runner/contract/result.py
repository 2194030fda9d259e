"""ExperimentResult: every number one run produced, with how it was obtained.

Energy that was not measured is ``None`` with a reason, never 0. Per-token figures are per *output* token. Every
top-level figure covers the one headline window ``measurement_methodology`` names; counts over the whole run are in
``whole_run``, and each window's own figures in ``windows``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lem_runner.contract.config import SCHEMA_VERSION, ExperimentConfig
from lem_runner.contract.legacy import MIXED_SPAN_VERSIONS, upgrade_result
from lem_runner.contract.operating_point import OperatingPoint


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


class DeviceIdleState(_Record):
    """What sets one device's idle power, read when a baseline is taken: a cached baseline is reused only on the same
    device in the same state (a field the device cannot report is None, and None matches only None)."""

    device: str = Field(..., description="the device as results name it (CUDA index, RAPL zone)")
    uuid: str | None = None
    memory_used_mib: float | None = Field(None, description="memory in use: the model's weights, KV cache, context")
    power_limit_w: float | None = None
    sm_clock_mhz: int | None = Field(None, description="application SM clock target")
    memory_clock_mhz: int | None = Field(None, description="application memory clock target")
    persistence_mode: bool | None = None


class BaselineCacheCheck(_Record):
    """What became of the cached baselines the controller offered: reused after a spot-check agreed, re-measured
    because the spot-check drifted, or measured because none was taken under these conditions."""

    outcome: Literal["reused", "remeasured", "measured"]
    reason: str
    cached_power_w: float | None = Field(None, description="the matching cached baseline's power")
    spot_check_w: float | None = Field(None, description="idle power over the short spot-check")
    spot_check_s: float | None = None
    drift_rel: float | None = Field(None, description="(spot-check - cached) / cached")
    tolerance_rel: float | None = Field(None, description="energy.baseline.drift_tolerance: |drift| above it re-measures")


class IdleBaseline(_Record):
    """Power the devices draw with nothing running, measured after the model loads and before warmup."""

    power_w: float = Field(..., ge=0, description="mean idle power, summed over the devices")
    power_std_w: float | None = Field(None, ge=0, description="standard deviation of the sampled idle power")
    per_device_w: dict[str, float] = Field(default_factory=dict)
    duration_s: float = Field(..., gt=0)
    n_samples: int = Field(0, ge=0, description="power samples the spread is taken over")
    measured_at: datetime
    device_uuids: list[str] = Field(default_factory=list, description="which physical devices it belongs to")
    method: str = ""
    source: Literal["fresh", "cached"] = "fresh"
    conditions: list[DeviceIdleState] = Field(
        default_factory=list, description="the devices' state when it was measured; the cache key")
    cache_check: BaselineCacheCheck | None = Field(
        None, description="how this run's cached baselines were judged (energy.baseline.mode: cached)")


class MeasuredDevice(_Record):
    """One device whose energy was measured, by physical identity."""

    index: int | None = Field(None, description="the config's device index (GPUs); None for a CPU package")
    id: str = Field(..., description="the key of this device in per_device_j")
    uuid: str | None = Field(None, description="GPU UUID as NVML reports it (torch saw the same UUID for the engine's device)")
    energy_j: float | None = Field(None, description="raw energy over the headline window, as in per_device_j; null where that is")


class EnergyResult(_Record):
    """Energy over the measurement window, how it was obtained, and how far it can be trusted."""

    sampler: str = Field(..., description="energy source, e.g. 'nvml_counter' or 'none'")
    method: str = Field(..., description="how the figure was obtained, in words")
    selected_because: str | None = Field(None, description="why this source was used (energy.sampler: auto says)")
    total_energy_j: float | None = Field(
        None, description="raw energy over the headline window (measurement_methodology), summed over devices")
    per_device_j: dict[str, float] | None = Field(
        None, description="raw energy per device over the headline window; sums to total_energy_j")
    devices: list[MeasuredDevice] = Field(
        default_factory=list, description="each measured device with its UUID beside its energy, in config order")
    unavailable_reason: str | None = Field(None, description="why energy is null, when it is")
    counter_update_period_ms: float | None = Field(None, description="measured interval between counter updates")
    counter_resets: int = Field(0, ge=0, description="times a counter went backwards (driver reload) and was rejoined")
    integrated_energy_j: float | None = Field(
        None, description="cross-check: sampled power integrated over the total window (the whole measured run)")
    counter_vs_integrated_rel_diff: float | None = Field(
        None, description="(integrated - counter) / counter, both over the total window"
    )
    sample_hz: float | None = None
    resolution_ms: float | None = Field(
        None, description="shortest span whose energy the series resolves: the interval between power samples, or "
                          "between counter reads for a source without power readings (RAPL); null without a series")
    n_power_samples: int = Field(0, ge=0, description="power samples inside the total window, over all devices")
    sampler_cpu_s: float | None = Field(None, description="CPU time the sampler thread used")
    timeseries_file: str | None = Field(None, description="sampled timeseries beside result.json (Parquet)")
    baseline: IdleBaseline | None = None
    baseline_unavailable_reason: str | None = None
    adjusted_energy_j: float | None = Field(
        None, description="headline window: raw - idle baseline power x window duration; signed (negative: the "
                          "baseline exceeds the raw energy, flagged baseline_exceeds_raw)")


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
    batches: int = Field(..., ge=0)
    stop_reason: str
    final_cv: float | None = None
    latencies_s: list[float] = Field(default_factory=list)
    method: str = Field("", description="which batches warmup ran and what convergence compared (convergence repeats "
                                        "one batch, so the CV measures the engine settling, not batch content)")


class GPUInfo(_Record):
    index: int
    name: str
    uuid: str | None = None
    memory_total_mib: int | None = None
    power_limit_w: float | None = None
    persistence_mode: bool | None = None
    compute_capability: str | None = None
    mig_mode: bool | None = None
    max_sm_clock_mhz: int | None = None
    max_memory_clock_mhz: int | None = None
    sm_clock_mhz: int | None = Field(None, description="SM clock when the environment was recorded")
    pci_bus_id: str | None = None


class SchedulerAllocation(_Record):
    """What a batch scheduler (Slurm) gave the run, read from the job's SLURM_* variables on the node."""

    scheduler: Literal["slurm"] = "slurm"
    job_id: str
    cluster: str | None = None
    partition: str | None = None
    node: str | None = Field(None, description="the node the job ran on (SLURMD_NODENAME)")
    cpus: int | None = Field(None, description="CPUs allocated on the node (SLURM_CPUS_ON_NODE)")
    gpus: str | None = Field(None, description="GPU indices Slurm allocated on the node (SLURM_JOB_GPUS)")
    cuda_visible_devices: str | None = Field(None, description="CUDA_VISIBLE_DEVICES as Slurm set it for the job")


class EnvironmentInfo(_Record):
    """What produced the numbers: software versions and hardware."""

    python: str
    platform: str
    hostname: str
    cpu_model: str | None = None
    cpu_count: int | None = None
    ram_total_gib: float | None = None
    os: str | None = None
    runner_version: str
    libraries: dict[str, str] = Field(default_factory=dict, description="versions of the backend's libraries")
    cuda_version: str | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = Field(None, description="CUDA version the driver supports")
    gpus: list[GPUInfo] = Field(default_factory=list)
    cuda_visible_devices: str | None = Field(
        None, description="CUDA_VISIBLE_DEVICES the engine ran under: the runner sets it to the measured GPUs' NVML "
                          "indices, in config order, before any CUDA initialisation")
    cuda_device_order: str | None = Field(None, description="CUDA_DEVICE_ORDER the engine ran under (PCI_BUS_ID)")
    in_container: bool = False
    image: str | None = Field(None, description="image id when the runner ran in a container")
    allocation: SchedulerAllocation | None = Field(None, description="the Slurm job's allocation, when run as one")


class RunTotals(_Record):
    """Counts over the whole measured run (every measured request, warmup excluded), whatever the headline window."""

    n_requests: int = Field(..., ge=0, description="requests measured")
    input_tokens: int = Field(..., ge=0, description="prompt tokens of those requests")
    output_tokens: int = Field(..., ge=0, description="tokens they generated")
    total_tokens: int = Field(..., ge=0, description="input_tokens + output_tokens")
    duration_s: float = Field(..., ge=0, description="wall time of the total window")
    flops: float | None = Field(None, description="estimated FLOPs of every request (= flops.total)")


class EnergyPerRequest(_Record):
    """Energy attributed to each request (see ServingFigures.energy_attribution_method), over requests."""

    n: int = Field(..., ge=1)
    mean_j: float
    p50_j: float
    p90_j: float
    mean_adjusted_j: float | None = Field(None, description="the same attribution of idle-adjusted energy")


class ServingFigures(_Record):
    """The load, its latencies, its energy per request, and goodput against the SLO. Times in the load window:
    from the first request's submission to the last request's end. Latencies are over requests that completed
    (status ok); errors and timeouts are counted, never dropped."""

    arrival: str
    offered_rate_rps: float | None = Field(None, description="rate asked for (open loop), or a trace's requests / "
                                                             "its span; None in a closed loop")
    achieved_rate_rps: float | None = Field(None, description="(requests sent - 1) / (last submission - first)")
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
    steady_state_definition: str = ""
    steady_state_start_s: float | None = Field(None, description="from the window's start")
    steady_state_duration_s: float | None = None
    steady_state_output_tokens: int | None = None
    steady_state_energy_j: float | None = None
    steady_state_adjusted_energy_j: float | None = None
    steady_state_energy_per_token_j: float | None = None
    idle_time_s: float = Field(..., ge=0, description="time inside the window with no request in flight")
    idle_energy_j: float | None = Field(None, description="raw energy while no request was in flight")
    energy_attribution_method: str = ""
    energy_per_request: EnergyPerRequest | None = None
    slo: dict[str, float] | None = Field(None, description="the bounds (ms) requests were held to")
    n_good: int | None = Field(None, description="ok requests meeting every SLO bound")
    good_share: float | None = Field(None, description="n_good / requests sent")
    goodput_rps: float | None = Field(None, description="n_good / load window")
    good_output_tokens: int | None = None
    energy_per_good_token_j: float | None = Field(
        None, description="raw energy of the whole load window / output tokens of requests that met the SLO")
    energy_per_good_token_adjusted_j: float | None = None
    good_requests_energy_per_token_j: float | None = Field(
        None, description="energy attributed to the requests that met the SLO / their output tokens")
    energy_unavailable_reason: str | None = None
    server: str = Field("", description="what served: the command's module, or the user's endpoint")
    server_start_s: float | None = Field(None, description="launch to a healthy health route; outside the window")
    server_log: str | None = Field(None, description="the server's output beside result.json")


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
    total_inference_time_sec: float = Field(..., ge=0, description="headline window: wall time")
    output_tokens: int = Field(..., ge=0, description="headline window: output tokens with a timestamp inside it")
    output_tokens_per_second: float = Field(..., ge=0, description="headline window: output tokens / wall time")
    total_energy_j: float | None = Field(
        None, description="headline window: raw energy, summed over devices; null when not measured")
    avg_energy_per_token_j: float | None = Field(
        None, description="headline window: total_energy_j / output_tokens")
    avg_energy_per_token_adjusted_j: float | None = Field(
        None, description="headline window: energy.adjusted_energy_j / output_tokens; signed")
    total_flops: float | None = Field(
        None, description="headline window: estimated FLOPs of its output tokens (a request's first token carries "
                          "its prefill)")
    whole_run: RunTotals = Field(..., description="counts over the whole measured run, whatever the headline window")
    flops_method: str | None = None
    flops: FlopsResult | None = None
    windows: dict[str, WindowFigures] = Field(
        default_factory=dict, description="every span computed; the headline figures are measurement_methodology's"
    )
    phases: PhaseSplit | None = None

    ttft: LatencyStats | None = Field(
        None, description="time to first token per request, from its submission (the start of the measured pass over "
                          "the prompt set, which submits every prompt at once) to its first token: queueing included, "
                          "the same definition for every backend, as vllm bench serve measures it")
    queue_time: LatencyStats | None = Field(
        None, description="per request, submission to the start of its prefill (queue_time_method says how known)")
    queue_time_method: str = Field("", description="where the prefill starts behind queue_time came from")
    batch_ttft: LatencyStats | None = Field(
        None, description="per request, first token - start of the generate call that carried it: for PyTorch its own "
                          "batch's start (the batch's prefill latency, earlier batches excluded); for engines given the "
                          "whole set in one call (vLLM, TensorRT-LLM) it equals ttft up to tokenisation")
    itl: LatencyStats | None = Field(None, description="inter-token latency, per token gap")
    latency_method: str = Field("", description="how token timestamps were taken for TTFT and ITL")
    energy: EnergyResult
    model_load_sec: float = Field(..., ge=0, description="outside the measurement window")
    warmup_batches: int = Field(..., ge=0, description="batches run before the window; excluded from every figure")
    warmup: WarmupResult | None = None
    backend_details: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    quality_flags: list[str] = Field(default_factory=list, description="codes of the measurement-quality warnings")
    serving: ServingFigures | None = Field(None, description="scenario serving: load, latencies, energy per request, "
                                                             "SLO goodput (requests.parquet holds each request)")
    environment: EnvironmentInfo
    operating_point: OperatingPoint | None = Field(
        None, description="GPU power limit and clocks: set by the controller (gpu: section) and observed in the window")
    start_time: datetime
    end_time: datetime

    @model_validator(mode="before")
    @classmethod
    def _read_older_schemas(cls, data: object) -> object:
        """A result.json from before schema 1.1 (spans mixed at the top level) is read in today's shape."""
        if isinstance(data, dict) and data.get("schema_version") in MIXED_SPAN_VERSIONS:
            return upgrade_result(data)
        return data
