"""GPU energy from NVML's cumulative hardware energy counter (nvmlDeviceGetTotalEnergyConsumption, Volta and newer).

The counter is read at the window's start and end on every device the run uses; the difference is the energy. This
is the primary source because power polling sees only part of the runtime on A100/H100 (Yang et al., SC24).
"""

from __future__ import annotations

import os
import time

from lem_runner.energy.base import EnergyReading

_MJ_PER_J = 1000.0
METHOD = "NVML total-energy counter (nvmlDeviceGetTotalEnergyConsumption), read at window start and end, summed over devices"


def _visible_device_ids(devices: list[int]) -> list[str]:
    """Map CUDA ordinals to what NVML understands, honouring CUDA_VISIBLE_DEVICES (indices or GPU UUIDs)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not visible:
        return [str(d) for d in devices]
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    out = []
    for d in devices:
        if d >= len(entries):
            raise ValueError(f"device {d} is not visible (CUDA_VISIBLE_DEVICES={visible})")
        out.append(entries[d])
    return out


class NvmlEnergyBackend:
    """Reads the NVML energy counter of each device the run uses."""

    name = "nvml_counter"

    def __init__(self, devices: list[int]) -> None:
        self.devices = devices
        self.unavailable_reason: str | None = None
        self._handles: dict[str, object] = {}
        self._start_mj: dict[str, int] = {}
        self._t0 = 0.0
        self._nvml = None

    def is_available(self) -> bool:
        """Initialise NVML and read each counter once; on failure record the exact reason and return False."""
        if self._handles:
            return True
        try:
            import pynvml
        except ImportError:
            self.unavailable_reason = "nvidia-ml-py (pynvml) is not installed"
            return False
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            self.unavailable_reason = f"NVML unavailable: {exc}"
            return False
        self._nvml = pynvml
        try:
            for dev_id in _visible_device_ids(self.devices):
                if dev_id.isdigit():
                    handle = pynvml.nvmlDeviceGetHandleByIndex(int(dev_id))
                else:
                    handle = pynvml.nvmlDeviceGetHandleByUUID(dev_id)
                pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
                self._handles[dev_id] = handle
        except (pynvml.NVMLError, ValueError) as exc:
            self.unavailable_reason = f"NVML energy counter not readable: {exc}"
            self._handles.clear()
            return False
        return True

    def _read_mj(self) -> dict[str, int]:
        return {d: self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for d, h in self._handles.items()}

    def start_tracking(self) -> None:
        if not self.is_available():
            raise RuntimeError(self.unavailable_reason or "NVML unavailable")
        self._t0 = time.perf_counter()
        self._start_mj = self._read_mj()

    def stop_tracking(self) -> EnergyReading:
        if not self._start_mj:
            raise RuntimeError("stop_tracking called before start_tracking")
        end_mj = self._read_mj()
        duration = time.perf_counter() - self._t0
        per_device: dict[str, float] = {}
        warnings: list[str] = []
        for dev, start in self._start_mj.items():
            delta = end_mj[dev] - start
            if delta < 0:
                reason = f"energy counter of GPU {dev} went backwards (reset or driver reload) during the window"
                return EnergyReading(self.name, METHOD, duration, unavailable_reason=reason)
            if delta == 0:
                warnings.append(f"energy counter of GPU {dev} did not tick in a {duration:.3f} s window: too short")
            per_device[dev] = delta / _MJ_PER_J
        return EnergyReading(
            sampler=self.name,
            method=METHOD,
            duration_s=duration,
            total_j=sum(per_device.values()),
            per_device_j=per_device,
            warnings=warnings,
        )
