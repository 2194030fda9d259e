"""Choose the energy source for a run from the config and where the model actually runs, and say why."""

from __future__ import annotations

from pathlib import Path

from lem_runner.contract.config import ExperimentConfig
from lem_runner.energy.base import EnergyBackend
from lem_runner.energy.external import CodeCarbonEnergyBackend, ZeusEnergyBackend
from lem_runner.energy.null import NullEnergyBackend
from lem_runner.energy.nvml import NvmlEnergyBackend
from lem_runner.energy.rapl import POWERCAP, RaplEnergyBackend, rapl_devices


class EnergyUnavailable(RuntimeError):
    """A sampler was asked for by name and cannot be had: the run fails rather than report null."""


def _chosen(backend, because: str):
    backend.selected_because = because
    return backend


def select_energy_backend(config: ExperimentConfig, device_kind: str, powercap: Path = POWERCAP) -> EnergyBackend:
    """``auto``: the NVML counter for GPU runs, RAPL for CPU runs where readable, else a null source carrying the
    reason. A sampler named explicitly is a requirement: without it the run fails instead of measuring nothing."""
    sampler, hz = config.energy.sampler, config.energy.sample_hz
    if sampler == "none":
        return NullEnergyBackend("energy measurement turned off in the config (energy.sampler: none)")
    if sampler == "auto":
        if device_kind == "cuda":
            nvml = NvmlEnergyBackend(config.devices, hz)
            if nvml.is_available():
                return _chosen(nvml, "auto: the run is on NVIDIA GPUs and their NVML energy counters are readable")
            return NullEnergyBackend(nvml.unavailable_reason or "NVML unavailable")
        devices, reason = rapl_devices(powercap)
        if devices:
            return _chosen(RaplEnergyBackend(devices, hz), "auto: the run is on CPU and RAPL package counters are readable")
        return NullEnergyBackend(f"run is on CPU: NVML covers GPUs only, and {reason}")
    if sampler in ("nvml", "zeus") and device_kind != "cuda":
        raise EnergyUnavailable(f"energy.sampler '{sampler}' needs a GPU run, but the model runs on {device_kind}")
    if sampler == "rapl":
        devices, reason = rapl_devices(powercap)
        if not devices:
            raise EnergyUnavailable(f"energy.sampler 'rapl': {reason}")
        return _chosen(RaplEnergyBackend(devices, hz), "energy.sampler: rapl (CPU packages only)")
    backend = {"nvml": lambda: NvmlEnergyBackend(config.devices, hz),
               "zeus": lambda: ZeusEnergyBackend(config.devices),
               "codecarbon": CodeCarbonEnergyBackend}[sampler]()
    if not backend.is_available():
        raise EnergyUnavailable(f"energy.sampler '{sampler}': {backend.unavailable_reason}")
    return _chosen(backend, f"energy.sampler: {sampler}")
