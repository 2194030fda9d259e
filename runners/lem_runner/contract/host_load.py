"""The host's CPU load over a run's window, recorded beside its figures (runner: measurement/host_load.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class HostLoad(BaseModel):
    """Other processes' CPU, hypervisor steal and load average over the measurement window, on the run's CPUs."""

    model_config = ConfigDict(extra="forbid")

    cpus: int = Field(..., ge=1, description="CPUs the run may use (its affinity); shares are of these")
    window_s: float = Field(..., ge=0, description="wall time between the two /proc snapshots (the window)")
    own_cpu_s: float = Field(..., ge=0, description="CPU time of the run's own processes (runner and descendants)")
    other_cpu_s: float = Field(..., ge=0, description="CPU time of every other process on the run's CPUs")
    other_cpu_share: float = Field(..., ge=0, le=1, description="other_cpu_s / (window_s x cpus)")
    steal_share: float = Field(..., ge=0, le=1, description="share of the run's CPUs' time the hypervisor stole")
    load_avg_1m_start: float | None = Field(None, description="1-minute load average when the window opened")
    load_avg_1m_end: float | None = Field(None, description="1-minute load average when the window closed")
    contended: bool = Field(..., description="flagged cpu_contention: other_cpu_share or steal_share over its limit")
    method: str = Field("", description="how the figures were read, and the limits of the flag")
