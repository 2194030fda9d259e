"""Energy sources behind one small protocol (name, is_available, start_tracking, stop_tracking)."""

from lem_runner.energy.base import EnergyBackend, EnergyReading
from lem_runner.energy.null import NullEnergyBackend
from lem_runner.energy.nvml import NvmlEnergyBackend
from lem_runner.energy.select import select_energy_backend

__all__ = ["EnergyBackend", "EnergyReading", "NullEnergyBackend", "NvmlEnergyBackend", "select_energy_backend"]
