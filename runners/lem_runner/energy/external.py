"""Zeus and CodeCarbon behind the same protocol, as optional extras. Both report window totals only: no counter
series, so no phase split or steady-state energy from them, and no baseline (each says so)."""

from __future__ import annotations

import time

from lem_runner.energy.base import EnergyReading, WindowTotalsOnly

_J_PER_KWH = 3.6e6


class _WindowTotals(WindowTotalsOnly):
    """Common shape: start a window, stop it, turn the library's totals into a reading."""

    name = ""
    unavailable_reason: str | None = None


class ZeusEnergySource(_WindowTotals):
    """``zeus.monitor.ZeusMonitor`` over the run's GPUs (begin_window / end_window)."""

    name = "zeus"
    method = "Zeus ZeusMonitor window (NVML energy counter where the GPU has one, else its power polling)"

    def __init__(self, devices: list[int]) -> None:
        self.devices = devices
        self._monitor = None
        self._t0 = 0.0

    def is_available(self) -> bool:
        if self._monitor is not None:
            return True
        try:
            from zeus.monitor import ZeusMonitor
        except ImportError:
            self.unavailable_reason = "Zeus is not installed (pip install zeus)"
            return False
        try:
            self._monitor = ZeusMonitor(gpu_indices=self.devices)
        except Exception as exc:  # Zeus raises its own errors when NVML or the GPUs are missing
            self.unavailable_reason = f"Zeus could not start: {exc}"
            return False
        return True

    def start_tracking(self) -> None:
        self._t0 = time.perf_counter()
        self._monitor.begin_window("lem")

    def stop_tracking(self) -> EnergyReading:
        m = self._monitor.end_window("lem")
        t1 = time.perf_counter()
        per_device = {str(k): float(v) for k, v in m.gpu_energy.items()}
        return EnergyReading(self.name, self.method, float(m.time), total_j=sum(per_device.values()),
                             per_device_j=per_device, t_start=self._t0, t_end=t1)


class CodeCarbonEnergySource(_WindowTotals):
    """CodeCarbon's ``OfflineEmissionsTracker``: GPU + CPU + RAM energy as CodeCarbon estimates it."""

    name = "codecarbon"
    method = ("CodeCarbon OfflineEmissionsTracker: GPU (NVML) + CPU (RAPL or its TDP model) + RAM (its model) energy, "
              "polled every second")

    def __init__(self) -> None:
        self._tracker = None
        self._t0 = 0.0

    def is_available(self) -> bool:
        try:
            from codecarbon import OfflineEmissionsTracker
        except ImportError:
            self.unavailable_reason = "CodeCarbon is not installed (pip install codecarbon)"
            return False
        self._cls = OfflineEmissionsTracker
        return True

    def start_tracking(self) -> None:
        self._tracker = self._cls(country_iso_code="USA", measure_power_secs=1, save_to_file=False,
                                  log_level="error")
        self._t0 = time.perf_counter()
        self._tracker.start()

    def stop_tracking(self) -> EnergyReading:
        self._tracker.stop()
        t1 = time.perf_counter()
        data = self._tracker.final_emissions_data
        parts = {"gpu": data.gpu_energy, "cpu": data.cpu_energy, "ram": data.ram_energy}
        return EnergyReading(self.name, self.method, t1 - self._t0, total_j=float(data.energy_consumed) * _J_PER_KWH,
                             per_device_j={k: float(v) * _J_PER_KWH for k, v in parts.items()},
                             t_start=self._t0, t_end=t1)
