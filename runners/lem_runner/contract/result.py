"""ExperimentResult: every number one run produced, with how it was obtained.

Energy that was not measured is ``None`` with a reason, never 0. Per-token figures are per *output* token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lem_runner.contract.config import SCHEMA_VERSION, ExperimentConfig


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


class EnergyResult(_Record):
    """Energy over the measurement window and how it was obtained."""

    sampler: str = Field(..., description="energy source, e.g. 'nvml_counter' or 'none'")
    method: str = Field(..., description="how the figure was obtained, in words")
    total_energy_j: float | None = None
    per_device_j: dict[str, float] | None = None
    unavailable_reason: str | None = Field(None, description="why energy is null, when it is")


class GPUInfo(_Record):
    index: int
    name: str
    uuid: str | None = None
    memory_total_mib: int | None = None
    power_limit_w: float | None = None
    persistence_mode: bool | None = None


class EnvironmentInfo(_Record):
    """What produced the numbers: software versions and hardware."""

    python: str
    platform: str
    hostname: str
    cpu_model: str | None = None
    cpu_count: int | None = None
    runner_version: str
    libraries: dict[str, str] = Field(default_factory=dict, description="versions of the backend's libraries")
    cuda_version: str | None = None
    driver_version: str | None = None
    gpus: list[GPUInfo] = Field(default_factory=list)
    in_container: bool = False
    image: str | None = Field(None, description="image id when the runner ran in a container")


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

    n_requests: int = Field(..., ge=0)
    total_tokens: int = Field(..., ge=0, description="input + output tokens over the window")
    input_tokens: int = Field(..., ge=0)
    output_tokens: int = Field(..., ge=0)
    total_inference_time_sec: float = Field(..., ge=0, description="wall time of the measurement window")
    avg_tokens_per_second: float = Field(..., ge=0, description="output tokens / window wall time")
    total_energy_j: float | None = Field(None, description="energy over the window; null when not measured")
    avg_energy_per_token_j: float | None = Field(None, description="total_energy_j / output tokens")
    total_flops: float | None = None
    flops_method: str | None = None

    ttft: LatencyStats | None = Field(None, description="time to first token, per request")
    itl: LatencyStats | None = Field(None, description="inter-token latency, per token gap")
    latency_method: str = Field("", description="how token timestamps were taken for TTFT and ITL")
    energy: EnergyResult
    model_load_sec: float = Field(..., ge=0, description="outside the measurement window")
    warmup_batches: int = Field(..., ge=0, description="batches run before the window; excluded from every figure")
    backend_details: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    environment: EnvironmentInfo
    start_time: datetime
    end_time: datetime
