"""The GpuControl protocol: the few NVML device commands lem uses to set an operating point, and its real
implementation over pynvml (nvidia-ml-py). Units are watts and MHz here; NVML's power limits are milliwatts.

Every failure of a device command is a :class:`GpuStateError`; ``permission`` is set when NVML answered
NVML_ERROR_NO_PERMISSION (the device commands need root), so the caller can say so in one line."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from lem_runner.contract import nvml


class GpuStateError(Exception):
    """NVML refused or failed a device query or command."""

    def __init__(self, message: str, permission: bool = False) -> None:
        super().__init__(message)
        self.permission = permission


@runtime_checkable
class GpuControl(Protocol):
    #: the host GPU id it was opened by (index or UUID)
    id: str
    uuid: str | None

    def power_limit_w(self) -> float: ...

    def power_limit_range_w(self) -> tuple[float, float]:
        """(min, max) the driver accepts (nvmlDeviceGetPowerManagementLimitConstraints)."""
        ...

    def set_power_limit_w(self, watts: float) -> None: ...

    def supported_memory_clocks_mhz(self) -> list[int]: ...

    def supported_sm_clocks_mhz(self, memory_clock_mhz: int) -> list[int]: ...

    def lock_sm_clocks(self, lo_mhz: int, hi_mhz: int) -> None: ...

    def reset_sm_clocks(self) -> None: ...

    def lock_memory_clocks(self, lo_mhz: int, hi_mhz: int) -> None: ...

    def reset_memory_clocks(self) -> None: ...

    def persistence_mode(self) -> bool: ...

    def set_persistence_mode(self, enabled: bool) -> None: ...

    def sm_clock_mhz(self) -> int | None: ...

    def memory_clock_mhz(self) -> int | None: ...


class NvmlGpu:
    """One GPU through pynvml; opened by host index or UUID."""

    def __init__(self, gpu_id: str, pynvml=None) -> None:
        """``pynvml``: an initialised module (the NVML access module's ``init``); None initialises one here."""
        if pynvml is None:
            try:
                pynvml = nvml.init()
            except nvml.NvmlUnavailable as exc:
                raise GpuStateError(f"cannot open GPU {gpu_id} through NVML: {exc}") from None
        self._n = pynvml
        self.id = gpu_id
        try:
            self._h = nvml.handle(pynvml, gpu_id)
            self.uuid = nvml.text(pynvml.nvmlDeviceGetUUID(self._h))
        except pynvml.NVMLError as exc:
            raise GpuStateError(f"cannot open GPU {gpu_id} through NVML: {exc}",
                                permission=getattr(exc, "value", None) == pynvml.NVML_ERROR_NO_PERMISSION) from None

    def _error(self, exc, what: str) -> GpuStateError:
        permission = getattr(exc, "value", None) == self._n.NVML_ERROR_NO_PERMISSION
        return GpuStateError(f"NVML {what} on GPU {self.id}: {exc}", permission=permission)

    def _call(self, what: str, fn, *args):
        try:
            return fn(self._h, *args)
        except self._n.NVMLError as exc:
            raise self._error(exc, what) from None

    def power_limit_w(self) -> float:  # NVML's power limits are milliwatts
        return self._call("nvmlDeviceGetPowerManagementLimit", self._n.nvmlDeviceGetPowerManagementLimit) / 1000.0

    def power_limit_range_w(self) -> tuple[float, float]:
        lo, hi = self._call("nvmlDeviceGetPowerManagementLimitConstraints",
                            self._n.nvmlDeviceGetPowerManagementLimitConstraints)
        return lo / 1000.0, hi / 1000.0

    def set_power_limit_w(self, watts: float) -> None:
        self._call("nvmlDeviceSetPowerManagementLimit", self._n.nvmlDeviceSetPowerManagementLimit,
                   int(round(watts * 1000)))

    def supported_memory_clocks_mhz(self) -> list[int]:
        return list(self._call("nvmlDeviceGetSupportedMemoryClocks", self._n.nvmlDeviceGetSupportedMemoryClocks))

    def supported_sm_clocks_mhz(self, memory_clock_mhz: int) -> list[int]:
        return list(self._call("nvmlDeviceGetSupportedGraphicsClocks", self._n.nvmlDeviceGetSupportedGraphicsClocks,
                               memory_clock_mhz))

    def lock_sm_clocks(self, lo_mhz: int, hi_mhz: int) -> None:
        self._call("nvmlDeviceSetGpuLockedClocks", self._n.nvmlDeviceSetGpuLockedClocks, lo_mhz, hi_mhz)

    def reset_sm_clocks(self) -> None:
        self._call("nvmlDeviceResetGpuLockedClocks", self._n.nvmlDeviceResetGpuLockedClocks)

    def lock_memory_clocks(self, lo_mhz: int, hi_mhz: int) -> None:
        self._call("nvmlDeviceSetMemoryLockedClocks", self._n.nvmlDeviceSetMemoryLockedClocks, lo_mhz, hi_mhz)

    def reset_memory_clocks(self) -> None:
        self._call("nvmlDeviceResetMemoryLockedClocks", self._n.nvmlDeviceResetMemoryLockedClocks)

    def persistence_mode(self) -> bool:
        return self._call("nvmlDeviceGetPersistenceMode", self._n.nvmlDeviceGetPersistenceMode) == \
            self._n.NVML_FEATURE_ENABLED

    def set_persistence_mode(self, enabled: bool) -> None:
        self._call("nvmlDeviceSetPersistenceMode", self._n.nvmlDeviceSetPersistenceMode,
                   self._n.NVML_FEATURE_ENABLED if enabled else self._n.NVML_FEATURE_DISABLED)

    def sm_clock_mhz(self) -> int | None:
        try:
            return self._call("nvmlDeviceGetClockInfo", self._n.nvmlDeviceGetClockInfo, self._n.NVML_CLOCK_SM)
        except GpuStateError:
            return None

    def memory_clock_mhz(self) -> int | None:
        try:
            return self._call("nvmlDeviceGetClockInfo", self._n.nvmlDeviceGetClockInfo, self._n.NVML_CLOCK_MEM)
        except GpuStateError:
            return None


def open_nvml(gpu_id: str) -> GpuControl:
    """The default opener: the host's GPU through the NVML access module (the simulated one under
    LEM_SIMULATED_GPU). Raises GpuStateError when NVML or the GPU is missing."""
    try:
        pynvml = nvml.init()
    except nvml.NvmlUnavailable as exc:
        raise GpuStateError(f"cannot open GPU {gpu_id} through NVML: {exc}") from None
    return NvmlGpu(gpu_id, pynvml)
