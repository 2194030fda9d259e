"""Energy sources behind one small protocol (is_available, probe, idle_baseline, start/stop tracking)."""

from lem_runner.energy.base import EnergyBackend, EnergyReading
from lem_runner.energy.null import NullEnergyBackend
from lem_runner.energy.nvml import NvmlEnergyBackend
from lem_runner.energy.select import EnergyUnavailable, select_energy_backend

__all__ = ["EnergyBackend", "EnergyReading", "EnergyUnavailable", "NullEnergyBackend", "NvmlEnergyBackend",
           "select_energy_backend"]
