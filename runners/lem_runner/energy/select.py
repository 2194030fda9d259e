"""Choose the energy source for a run from the config and where the model actually runs, and say why."""

from __future__ import annotations

from pathlib import Path

from lem_runner.contract.config import ExperimentConfig
from lem_runner.energy.base import EnergySource
from lem_runner.energy.external import CodeCarbonEnergySource, ZeusEnergySource
from lem_runner.energy.null import NullEnergySource
from lem_runner.energy.nvml import NvmlEnergySource
from lem_runner.energy.rapl import POWERCAP, RaplEnergySource, rapl_devices


class EnergyUnavailable(RuntimeError):
    """An energy source was asked for by name (energy.sampler) and cannot be had: the run fails rather than report
    null."""


def _chosen(source, because: str):
    source.selected_because = because
    return source


def select_energy_source(config: ExperimentConfig, device_kind: str, powercap: Path = POWERCAP) -> EnergySource:
    """``auto``: the NVML counter for GPU runs, RAPL for CPU runs where readable, else a null source carrying the
    reason. A source named explicitly (the config's ``energy.sampler``) is a requirement: without it the run fails
    instead of measuring nothing."""
    sampler, hz = config.energy.sampler, config.energy.sample_hz
    if sampler == "none":
        return NullEnergySource("energy measurement turned off in the config (energy.sampler: none)")
    if sampler == "auto":
        if device_kind == "cuda":
            nvml = NvmlEnergySource(config.devices, hz)
            if nvml.is_available():
                return _chosen(nvml, "auto: the run is on NVIDIA GPUs and their NVML energy counters are readable")
            return NullEnergySource(nvml.unavailable_reason or "NVML unavailable")
        devices, reason = rapl_devices(powercap)
        if devices:
            return _chosen(RaplEnergySource(devices, hz), "auto: the run is on CPU and RAPL package counters are readable")
        return NullEnergySource(f"run is on CPU: NVML covers GPUs only, and {reason}")
    if sampler in ("nvml", "zeus") and device_kind != "cuda":
        raise EnergyUnavailable(f"energy.sampler '{sampler}' needs a GPU run, but the model runs on {device_kind}")
    if sampler == "rapl":
        devices, reason = rapl_devices(powercap)
        if not devices:
            raise EnergyUnavailable(f"energy.sampler 'rapl': {reason}")
        return _chosen(RaplEnergySource(devices, hz), "energy.sampler: rapl (CPU packages only)")
    source = {"nvml": lambda: NvmlEnergySource(config.devices, hz),
               "zeus": lambda: ZeusEnergySource(config.devices),
               "codecarbon": CodeCarbonEnergySource}[sampler]()
    if not source.is_available():
        raise EnergyUnavailable(f"energy.sampler '{sampler}': {source.unavailable_reason}")
    return _chosen(source, f"energy.sampler: {sampler}")
