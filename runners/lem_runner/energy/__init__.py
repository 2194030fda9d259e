"""Energy sources behind one small protocol (is_available, probe, idle_baseline, start/stop tracking)."""

from lem_runner.energy.base import EnergyReading, EnergySource
from lem_runner.energy.null import NullEnergySource
from lem_runner.energy.nvml import NvmlEnergySource
from lem_runner.energy.select import EnergyUnavailable, select_energy_source

__all__ = ["EnergySource", "EnergyReading", "EnergyUnavailable", "NullEnergySource", "NvmlEnergySource",
           "select_energy_source"]
