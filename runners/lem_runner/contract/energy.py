"""The energy record of a result: what measured, the figures' checks, and the idle baseline with the device state it
was taken in (also the cache key the controller reuses baselines by)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    id: str = Field(..., description="the device as the energy source names it (CUDA index, RAPL zone)")
    uuid: str | None = Field(None, description="GPU UUID as NVML reports it (torch saw the same UUID for the engine's device)")
    energy_j: float | None = Field(None, description="raw energy over the headline window; null when the headline "
                                                     "window's energy is")


#: what each energy source's joules cover, and what they leave out (emissions computed from them cover the same)
ENERGY_SCOPES = {
    "nvml_counter": "GPU only: the measured GPUs' own energy (NVML board counter); not the host CPU, host DRAM, disks, "
                    "fans, power-supply losses or the rest of the server",
    "zeus": "GPU only: the run's GPUs as Zeus measures them; not the host CPU, host DRAM or the rest of the server",
    "rapl": "CPU package(s) only: the RAPL package domain (cores and uncore); not host DRAM (RAPL's dram domain is not "
            "read), GPUs or the rest of the server",
    "codecarbon": "GPU + CPU + RAM as CodeCarbon estimates them (CPU from RAPL or a TDP model, RAM from a model, not "
                  "measured); not disks, fans, power-supply losses or the rest of the server",
}


def energy_scope(source: str) -> str | None:
    """What ``source``'s energy covers, in words; None for 'none' or a source lem does not know."""
    return ENERGY_SCOPES.get(source)


class EnergyResult(_Record):
    """Energy over the measurement window, how it was obtained, and how far it can be trusted."""

    source: str = Field(..., description="the energy source that measured, e.g. 'nvml_counter', 'rapl', 'none' "
                                         "(chosen by the config's energy.sampler)")
    method: str = Field(..., description="how the figure was obtained, in words")
    scope: str | None = Field(None, description="what the energy covers and leaves out (GPU only, or the CPU "
                              "package, never host DRAM or the rest of the server); emissions cover the same")
    selected_because: str | None = Field(None, description="why this source was used (energy.sampler: auto says)")
    devices: list[MeasuredDevice] = Field(
        default_factory=list, description="each measured device with its UUID beside its raw energy over the headline "
                                          "window, in config order; their energies sum to total_energy_j")
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
    sampler_cpu_s: float | None = Field(None, description="CPU time the sampler thread (power/clock readings between "
                                                          "the window's counter reads) used")
    timeseries_file: str | None = Field(None, description="sampled timeseries beside result.json (Parquet)")
    baseline: IdleBaseline | None = None
    baseline_unavailable_reason: str | None = None
