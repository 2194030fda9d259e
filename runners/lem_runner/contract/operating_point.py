"""The GPU operating point of a run: what the controller set (requested, read back, what it restores to) and what the
sampler saw in force during the measurement window. The controller owns the setting; the runner only observes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GpuSetting(_Record):
    """One device's settings as the controller applied them before the run (host numbering)."""

    gpu: str = Field(..., description="host GPU id (index or UUID) the setting was applied to")
    uuid: str | None = None
    requested_power_limit_w: float | None = None
    applied_power_limit_w: float | None = Field(
        None, description="read back after setting (nvmlDeviceGetPowerManagementLimit)")
    previous_power_limit_w: float | None = Field(None, description="what the run restores it to")
    requested_sm_clock_mhz: tuple[int, int] | None = Field(None, description="locked SM clock range [min, max]")
    requested_memory_clock_mhz: tuple[int, int] | None = Field(None, description="locked memory clock [min, max]")
    sm_clock_after_lock_mhz: int | None = Field(
        None, description="SM clock read right after locking (NVML has no getter for the lock itself; the window's "
                          "observed clocks are the check)")
    memory_clock_after_lock_mhz: int | None = None
    requested_persistence_mode: bool | None = None
    applied_persistence_mode: bool | None = Field(None, description="read back after setting")
    previous_persistence_mode: bool | None = None


class ObservedClocks(_Record):
    """Clocks and power limit in force during the window, from the sampler's timeseries (one device)."""

    n_samples: int = Field(..., ge=0, description="sampler ticks inside the window")
    sm_clock_min_mhz: int | None = None
    sm_clock_median_mhz: float | None = None
    sm_clock_max_mhz: int | None = None
    memory_clock_min_mhz: int | None = None
    memory_clock_median_mhz: float | None = None
    memory_clock_max_mhz: int | None = None
    power_limit_min_w: float | None = Field(None, description="enforced power limit (nvmlDeviceGetEnforcedPowerLimit)")
    power_limit_max_w: float | None = None
    sm_clock_outside_lock_share: float | None = Field(
        None, description="share of window samples whose SM clock lay outside the locked range (± tolerance)")
    memory_clock_outside_lock_share: float | None = None


class OperatingPoint(_Record):
    """Requested/applied settings (empty when lem changed nothing) and the observed clocks per device."""

    settings: list[GpuSetting] = Field(default_factory=list)
    observed: dict[str, ObservedClocks] = Field(default_factory=dict, description="sampled device id -> clocks")
    method: str = ""
