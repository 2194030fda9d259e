"""Choose the energy source for a run from the config and where the model actually runs."""

from __future__ import annotations

from pathlib import Path

from lem_runner.contract.config import ExperimentConfig
from lem_runner.energy.base import EnergyBackend
from lem_runner.energy.null import NullEnergyBackend
from lem_runner.energy.nvml import NvmlEnergyBackend

_RAPL = Path("/sys/class/powercap")


def cpu_energy_reason() -> str:
    """Why a CPU-only run has no energy figure, stated exactly for this machine."""
    zones = sorted(p.name for p in _RAPL.glob("intel-rapl:*")) if _RAPL.is_dir() else []
    if zones:
        return f"run is on CPU: NVML covers GPUs only, and reading the CPU's RAPL zones ({', '.join(zones)}) is not implemented yet"
    return "run is on CPU: NVML covers GPUs only, and no CPU energy counter is readable here (no RAPL zone in /sys/class/powercap)"


class EnergyUnavailable(RuntimeError):
    """``energy.sampler: nvml`` was asked for explicitly and cannot be had: the run fails rather than report null."""


def select_energy_backend(config: ExperimentConfig, device_kind: str) -> EnergyBackend:
    """NVML for GPU runs when its counter reads; otherwise a null source carrying the reason. An explicit
    ``sampler: nvml`` is a requirement: without it the run fails instead of silently measuring nothing."""
    required = config.energy.sampler == "nvml"
    if config.energy.sampler == "none":
        return NullEnergyBackend("energy measurement turned off in the config (energy.sampler: none)")
    if device_kind != "cuda":
        reason = cpu_energy_reason()
        if required:
            raise EnergyUnavailable(f"energy.sampler 'nvml' needs a GPU run: {reason}")
        return NullEnergyBackend(reason)
    nvml = NvmlEnergyBackend(config.devices)
    if nvml.is_available():
        return nvml
    reason = nvml.unavailable_reason or "NVML unavailable"
    if required:
        raise EnergyUnavailable(f"energy.sampler 'nvml': {reason}")
    return NullEnergyBackend(reason)
