"""GPU energy from NVML's cumulative hardware energy counter (nvmlDeviceGetTotalEnergyConsumption, Volta and newer).

The counter is read at the window's boundaries and marks on every device the run uses, and by the sampler thread
between them; the difference is the energy. It is the primary source because power polling sees only part of the
runtime on A100/H100 (Yang et al., SC24); the sampled power is kept as a cross-check and a timeseries.
"""

from __future__ import annotations

import os

from lem_runner.contract import nvml
from lem_runner.contract.energy import DeviceIdleState
from lem_runner.contract.nvml import or_none
from lem_runner.energy.device import DeviceSample
from lem_runner.energy.tracker import CounterEnergySource

METHOD = ("NVML total-energy counter (nvmlDeviceGetTotalEnergyConsumption) read at the window's start and end, "
          "summed over the devices the run uses")


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


class NvmlDevice:
    """One GPU through pynvml."""

    wrap_mj = None  # unsigned 64-bit millijoules: no wrap within any run

    def __init__(self, pynvml, dev_id: str) -> None:
        self._nvml = pynvml
        self.id = dev_id
        self._h = nvml.handle(pynvml, dev_id)
        self.uuid = or_none(pynvml.nvmlDeviceGetUUID, self._h)
        self.energy_mj()  # raises if the counter is not readable
        self.power_source = "instant" if self._instant_power_mw() is not None else "averaged"

    def _instant_power_mw(self) -> float | None:
        """Instantaneous power (field NVML_FI_DEV_POWER_INSTANT, Hopper-era drivers), or None where unsupported.
        nvmlDeviceGetPowerUsage is a one-second average on A100/H100, which lags a load step by half a second."""
        field = getattr(self._nvml, "NVML_FI_DEV_POWER_INSTANT", None)
        if field is None:
            return None
        try:
            (value,) = self._nvml.nvmlDeviceGetFieldValues(self._h, [field])
        except Exception:  # an older driver or pynvml without field values: use the averaged reading
            return None
        if value.nvmlReturn != 0:
            return None
        return float(value.value.uiVal)

    def _power_w(self) -> float | None:
        if self.power_source == "instant":
            mw = self._instant_power_mw()
        else:
            mw = or_none(self._nvml.nvmlDeviceGetPowerUsage, self._h)
        return mw / 1000.0 if mw is not None else None  # NVML reports milliwatts

    def energy_mj(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._h)

    def sample(self) -> DeviceSample:
        n, h = self._nvml, self._h
        mem = or_none(n.nvmlDeviceGetMemoryInfo, h)
        util = or_none(n.nvmlDeviceGetUtilizationRates, h)
        reasons = getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None) or n.nvmlDeviceGetCurrentClocksThrottleReasons
        return DeviceSample(
            power_w=self._power_w(),
            temperature_c=or_none(n.nvmlDeviceGetTemperature, h, n.NVML_TEMPERATURE_GPU),
            sm_clock_mhz=or_none(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_SM),
            memory_used_mib=mem.used / 2**20 if mem is not None else None,
            utilization_pct=float(util.gpu) if util is not None else None,
            clock_event_reasons=or_none(reasons, h),
            memory_clock_mhz=or_none(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_MEM),
            power_limit_w=limit_mw / 1000.0 if (limit_mw := or_none(n.nvmlDeviceGetEnforcedPowerLimit, h)) else None,
        )

    def other_processes(self) -> list[int] | None:
        procs = or_none(self._nvml.nvmlDeviceGetComputeRunningProcesses, self._h)
        if procs is None:
            return None
        pids = [p.pid for p in procs]
        if os.getpid() in pids:
            return [p for p in pids if p != os.getpid()]
        # in a container NVML reports host PIDs, so ours cannot be told apart: only a second process is another
        return pids[1:] if len(pids) > 1 else []

    def persistence_mode(self) -> bool | None:
        mode = or_none(self._nvml.nvmlDeviceGetPersistenceMode, self._h)
        return None if mode is None else bool(mode)

    def idle_state(self) -> DeviceIdleState:
        n, h = self._nvml, self._h
        mem = or_none(n.nvmlDeviceGetMemoryInfo, h)
        limit_mw = or_none(n.nvmlDeviceGetEnforcedPowerLimit, h)
        return DeviceIdleState(
            device=self.id, uuid=self.uuid,
            memory_used_mib=mem.used / 2**20 if mem is not None else None,
            power_limit_w=limit_mw / 1000.0 if limit_mw is not None else None,
            sm_clock_mhz=or_none(n.nvmlDeviceGetApplicationsClock, h, n.NVML_CLOCK_SM),
            memory_clock_mhz=or_none(n.nvmlDeviceGetApplicationsClock, h, n.NVML_CLOCK_MEM),
            persistence_mode=self.persistence_mode(),
        )


def _simulated_method(scenario: str) -> str:
    return (f"SIMULATED device, not a measurement: lem's simulated NVML driver (lem_runner.simgpu, scenario "
            f"{scenario}) under the real pynvml; ")


class NvmlEnergySource(CounterEnergySource):
    """Reads the NVML energy counter of each device the run uses; ``is_available`` opens them and says why not. On
    the simulated device (LEM_SIMULATED_GPU) its name is ``simgpu_nvml_counter`` and its method says so."""

    def __init__(self, devices: list[int], sample_hz: float = 10.0) -> None:
        scenario = nvml.simulated()
        super().__init__([], name=nvml.SIMULATED_SOURCE if scenario else "nvml_counter", method=METHOD,
                         sample_hz=sample_hz)
        self.device_indices = devices
        self.unavailable_reason: str | None = None
        self._prefix = _simulated_method(scenario) if scenario else ""

    def is_available(self) -> bool:
        if self.devices:
            return True
        try:
            pynvml = nvml.init()
        except nvml.NvmlUnavailable as exc:
            self.unavailable_reason = str(exc)
            return False
        try:
            self.devices = [NvmlDevice(pynvml, d) for d in _visible_device_ids(self.device_indices)]
            sources = sorted({d.power_source for d in self.devices})
            self.method = (f"{self._prefix}{METHOD}; cross-check and timeseries power: "
                           + " / ".join({"instant": "instantaneous (NVML_FI_DEV_POWER_INSTANT)",
                                         "averaged": "1 s average (nvmlDeviceGetPowerUsage)"}[s] for s in sources))
        except (pynvml.NVMLError, ValueError) as exc:
            self.unavailable_reason = f"NVML energy counter not readable: {exc}"
            self.devices = []
            nvml.shutdown(pynvml)
            return False
        return True

    def start_tracking(self) -> None:
        if not self.is_available():
            raise RuntimeError(self.unavailable_reason or "NVML unavailable")
        super().start_tracking()
