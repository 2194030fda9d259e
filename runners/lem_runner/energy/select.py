"""Choose the energy source for a run from the config and where the model actually runs, and say why."""

from __future__ import annotations

from pathlib import Path

from lem_runner.contract import nvml
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


def measures_gpu(config: ExperimentConfig, device_kind: str) -> bool:
    """Whether the run's energy comes from GPUs: the engine runs on CUDA, or a simulated GPU (LEM_SIMULATED_GPU)
    stands in for one while the compute runs on the CPU (unless the config says device: cpu)."""
    return device_kind == "cuda" or (nvml.simulated() is not None and config.device != "cpu")


def select_energy_source(config: ExperimentConfig, device_kind: str, powercap: Path = POWERCAP) -> EnergySource:
    """``auto``: the NVML counter for GPU runs, RAPL for CPU runs where readable, else a null source carrying the
    reason. A source named explicitly (the config's ``energy.sampler``) is a requirement: without it the run fails
    instead of measuring nothing."""
    sampler, hz = config.energy.sampler, config.energy.sample_hz
    if sampler == "none":
        return NullEnergySource("energy measurement turned off in the config (energy.sampler: none)")
    gpu = measures_gpu(config, device_kind)
    if sampler == "auto":
        if gpu:
            source = NvmlEnergySource(config.devices, hz)
            if source.is_available():
                because = ("auto: the run is on NVIDIA GPUs and their NVML energy counters are readable"
                           if device_kind == "cuda" else
                           f"auto: SIMULATED GPUs ({nvml.SIMULATED_ENV}) stand in for the GPUs; compute runs on "
                           f"{device_kind}")
                return _chosen(source, because)
            return NullEnergySource(source.unavailable_reason or "NVML unavailable")
        devices, reason = rapl_devices(powercap)
        if devices:
            return _chosen(RaplEnergySource(devices, hz), "auto: the run is on CPU and RAPL package counters are readable")
        return NullEnergySource(f"run is on CPU: NVML covers GPUs only, and {reason}")
    if sampler in ("nvml", "zeus") and not gpu:
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
