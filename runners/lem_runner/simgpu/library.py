"""The simulated ``libnvidia-ml``: an object that stands where pynvml keeps its ``CDLL`` (``pynvml.nvmlLib``) and hands
out C function pointers (ctypes callbacks) by NVML's exported names.

pynvml's own wrappers then run unchanged: they build their ctypes arguments and structs, call the function pointer
through libffi, and turn the returned ``nvmlReturn_t`` into their ``NVMLError_*`` classes. The callbacks see only
what a C library sees — integers and addresses — and write their answers through those addresses in the layouts of
nvml.h (declared here from the header, not borrowed from pynvml). A name this "driver" does not export raises
AttributeError, which pynvml turns into NVML_ERROR_FUNCTION_NOT_FOUND exactly as for a real, older libnvidia-ml.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from ctypes import (
    CFUNCTYPE,
    Structure,
    Union,
    c_char,
    c_double,
    c_int,
    c_int64,
    c_longlong,
    c_uint,
    c_uint32,
    c_ulonglong,
    c_ushort,
    c_void_p,
)

from lem_runner.simgpu.model import DeviceModel
from lem_runner.simgpu.scenario import Scenario
from lem_runner.simgpu.state import State

# nvmlReturn_t values (nvml.h)
SUCCESS, UNINITIALIZED, INVALID_ARGUMENT, NOT_SUPPORTED, NO_PERMISSION = 0, 1, 2, 3, 4
NOT_FOUND, INSUFFICIENT_SIZE, UNKNOWN = 6, 7, 999
_ERROR_STRINGS = {SUCCESS: b"Success", UNINITIALIZED: b"Uninitialized", INVALID_ARGUMENT: b"Invalid Argument",
                  NOT_SUPPORTED: b"Not Supported", NO_PERMISSION: b"Insufficient Permissions",
                  NOT_FOUND: b"Not Found", INSUFFICIENT_SIZE: b"Insufficient Size", UNKNOWN: b"Unknown Error"}

# enums (nvml.h)
CLOCK_GRAPHICS, CLOCK_SM, CLOCK_MEM, CLOCK_VIDEO = 0, 1, 2, 3
TEMPERATURE_GPU = 0
FI_DEV_TOTAL_ENERGY_CONSUMPTION, FI_DEV_POWER_AVERAGE, FI_DEV_POWER_INSTANT = 83, 185, 186
VALUE_TYPE_UNSIGNED_INT, VALUE_TYPE_UNSIGNED_LONG_LONG = 1, 3


# structs, as nvml.h lays them out
class _Memory(Structure):
    _fields_ = [("total", c_ulonglong), ("free", c_ulonglong), ("used", c_ulonglong)]


class _MemoryV2(Structure):
    _fields_ = [("version", c_uint), ("total", c_ulonglong), ("reserved", c_ulonglong), ("free", c_ulonglong),
                ("used", c_ulonglong)]


class _Utilization(Structure):
    _fields_ = [("gpu", c_uint), ("memory", c_uint)]


class _PciInfo(Structure):
    _fields_ = [("busIdLegacy", c_char * 16), ("domain", c_uint), ("bus", c_uint), ("device", c_uint),
                ("pciDeviceId", c_uint), ("pciSubSystemId", c_uint), ("busId", c_char * 32)]


class _Value(Union):
    _fields_ = [("dVal", c_double), ("uiVal", c_uint), ("ulVal", ctypes.c_ulong), ("ullVal", c_ulonglong),
                ("sllVal", c_longlong), ("siVal", c_int), ("usVal", c_ushort)]


class _FieldValue(Structure):
    _fields_ = [("fieldId", c_uint32), ("scopeId", c_uint32), ("timestamp", c_int64), ("latencyUsec", c_int64),
                ("valueType", c_uint), ("nvmlReturn", c_uint), ("value", _Value)]


class _ProcessInfo(Structure):  # nvmlProcessInfo_t (v2/v3)
    _fields_ = [("pid", c_uint), ("usedGpuMemory", c_ulonglong), ("gpuInstanceId", c_uint),
                ("computeInstanceId", c_uint)]


_HANDLE_BASE = 0x5100_0000
_P = c_void_p  # every pointer argument arrives as an address (None for NULL)

#: exported name -> (argument types, implementing method); every function returns nvmlReturn_t
_EXPORTS: dict[str, tuple[tuple, str]] = {}


def _export(*names: str, args: tuple = ()):
    def register(fn):
        for name in names:
            _EXPORTS[name] = (args, fn.__name__)
        return fn
    return register


def _put(ptr, ctype, value) -> None:
    ctype.from_address(ptr).value = value


def _put_text(ptr, length: int, text: str) -> int:
    data = text.encode() + b"\0"
    if ptr is None:
        return INVALID_ARGUMENT
    if len(data) > length:
        return INSUFFICIENT_SIZE
    ctypes.memmove(ptr, data, len(data))
    return SUCCESS


def _put_array(count_ptr, array_ptr, values: list[int]) -> int:
    """NVML's two-call pattern: report the size (INSUFFICIENT_SIZE) until the caller's array holds them all."""
    if count_ptr is None:
        return INVALID_ARGUMENT
    room = c_uint.from_address(count_ptr).value
    _put(count_ptr, c_uint, len(values))
    if not values:
        return SUCCESS
    if array_ptr is None or room < len(values):
        return INSUFFICIENT_SIZE
    (c_uint * len(values)).from_address(array_ptr)[:] = values
    return SUCCESS


class SimulatedNvmlLibrary:
    """A stand-in for ``CDLL("libnvidia-ml.so.1")`` over one scenario."""

    def __init__(self, scenario: Scenario, clock=time.time) -> None:
        self.scenario = scenario
        self.clock = clock
        self.state = State(scenario.state_file)
        self._init_count = 0
        self._lock = threading.RLock()
        self._models: list[DeviceModel] | None = None
        self._error_text: dict[int, ctypes.Array] = {}
        self._pointers: dict[str, object] = {}

    # --- what pynvml sees ----------------------------------------------------------------------------------
    def __getattr__(self, name: str):
        if name.startswith("_") or name in self.scenario.missing_functions or name not in _EXPORTS:
            raise AttributeError(name)  # pynvml: NVML_ERROR_FUNCTION_NOT_FOUND
        pointers = self.__dict__["_pointers"]
        if name not in pointers:
            args, method = _EXPORTS[name]
            restype = c_void_p if name == "nvmlErrorString" else c_int
            pointers[name] = CFUNCTYPE(restype, *args)(self._guarded(name, getattr(self, method)))
        return pointers[name]

    def _guarded(self, name: str, impl):
        """A callback must not raise (ctypes would print it and return 0, NVML_SUCCESS): answer UNKNOWN instead."""
        def call(*args):
            try:
                with self._lock:
                    if name not in ("nvmlInitWithFlags", "nvmlInit_v2", "nvmlInit", "nvmlErrorString") \
                            and self._init_count == 0:
                        return UNINITIALIZED
                    return impl(*args)
            except Exception as exc:  # a simulator bug: visible, and an error to the caller, never a silent success
                print(f"lem simgpu: {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                return UNKNOWN
        return call

    # --- devices --------------------------------------------------------------------------------------------
    def models(self) -> list[DeviceModel]:
        if self._models is None:
            t0 = self.state.ensure_t0(self.scenario.t0)
            self._models = [DeviceModel(spec, self.state, t0, self.scenario.energy_update_s,
                                        self.scenario.power_average_s) for spec in self.scenario.devices]
        return self._models

    def _device(self, handle, function: str) -> tuple[int, DeviceModel | None]:
        """(return code, model) for a handle; a function this device does not support answers NOT_SUPPORTED."""
        if handle is None:
            return INVALID_ARGUMENT, None
        index, rest = divmod(handle - _HANDLE_BASE, 16)
        models = self.models()
        if rest or not 0 <= index < len(models):
            return INVALID_ARGUMENT, None
        model = models[index]
        if function in model.spec.unsupported:
            return NOT_SUPPORTED, None
        return SUCCESS, model

    def _setter(self, handle, function: str) -> tuple[int, DeviceModel | None]:
        ret, model = self._device(handle, function)
        if ret == SUCCESS and not self.scenario.root:
            return NO_PERMISSION, None
        return ret, model

    # --- library and system -----------------------------------------------------------------------------
    @_export("nvmlInitWithFlags", args=(c_uint,))
    def _init_with_flags(self, flags):
        self.models()
        self._init_count += 1
        return SUCCESS

    @_export("nvmlInit_v2", "nvmlInit")
    def _init(self):
        return self._init_with_flags(0)

    @_export("nvmlShutdown")
    def _shutdown(self):
        if self._init_count == 0:
            return UNINITIALIZED
        self._init_count -= 1
        return SUCCESS

    @_export("nvmlErrorString", args=(c_int,))
    def _error_string(self, code):
        if code not in self._error_text:
            self._error_text[code] = ctypes.create_string_buffer(_ERROR_STRINGS.get(code, b"Unknown Error"))
        return ctypes.addressof(self._error_text[code])

    @_export("nvmlSystemGetDriverVersion", "nvmlSystemGetNVMLVersion", args=(_P, c_uint))
    def _driver_version(self, buf, length):
        return _put_text(buf, length, self.scenario.driver_version)

    @_export("nvmlSystemGetCudaDriverVersion", "nvmlSystemGetCudaDriverVersion_v2", args=(_P,))
    def _cuda_driver_version(self, ptr):
        _put(ptr, c_int, self.scenario.cuda_driver_version)
        return SUCCESS

    @_export("nvmlDeviceGetCount_v2", "nvmlDeviceGetCount", args=(_P,))
    def _count(self, ptr):
        _put(ptr, c_uint, len(self.models()))
        return SUCCESS

    @_export("nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex", args=(c_uint, _P))
    def _handle_by_index(self, index, out):
        if not 0 <= index < len(self.models()) or out is None:
            return INVALID_ARGUMENT
        _put(out, c_void_p, _HANDLE_BASE + 16 * index)
        return SUCCESS

    def _handle_where(self, out, match) -> int:
        if out is None:
            return INVALID_ARGUMENT
        for i, model in enumerate(self.models()):
            if match(model.spec):
                _put(out, c_void_p, _HANDLE_BASE + 16 * i)
                return SUCCESS
        return NOT_FOUND

    @_export("nvmlDeviceGetHandleByUUID", args=(ctypes.c_char_p, _P))
    def _handle_by_uuid(self, uuid, out):
        if not uuid:
            return INVALID_ARGUMENT
        return self._handle_where(out, lambda spec: spec.uuid == uuid.decode())

    @_export("nvmlDeviceGetHandleByPciBusId_v2", "nvmlDeviceGetHandleByPciBusId", args=(ctypes.c_char_p, _P))
    def _handle_by_pci(self, bus, out):
        if not bus:
            return INVALID_ARGUMENT
        want = bus.decode().upper()
        return self._handle_where(out, lambda spec: spec.pci_bus_id in (want, f"0000{want}"))

    @_export("nvmlDeviceGetIndex", args=(_P, _P))
    def _index(self, handle, out):
        ret, model = self._device(handle, "nvmlDeviceGetIndex")
        if ret == SUCCESS:
            _put(out, c_uint, self.models().index(model))
        return ret

    @_export("nvmlDeviceGetName", args=(_P, _P, c_uint))
    def _name(self, handle, buf, length):
        ret, model = self._device(handle, "nvmlDeviceGetName")
        return ret if ret else _put_text(buf, length, model.spec.name)

    @_export("nvmlDeviceGetUUID", args=(_P, _P, c_uint))
    def _uuid(self, handle, buf, length):
        ret, model = self._device(handle, "nvmlDeviceGetUUID")
        return ret if ret else _put_text(buf, length, model.spec.uuid)

    @_export("nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo_v2", "nvmlDeviceGetPciInfo", args=(_P, _P))
    def _pci(self, handle, out):
        ret, model = self._device(handle, "nvmlDeviceGetPciInfo")
        if ret:
            return ret
        info = _PciInfo.from_address(out)
        bus_id = model.spec.pci_bus_id
        domain, bus, rest = bus_id.split(":")
        info.busId, info.busIdLegacy = bus_id.encode(), bus_id[-12:].encode()
        info.domain, info.bus, info.device = int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16)
        info.pciDeviceId, info.pciSubSystemId = 0x233010DE, 0x16C110DE
        return SUCCESS

    @_export("nvmlDeviceGetCudaComputeCapability", args=(_P, _P, _P))
    def _compute_capability(self, handle, major, minor):
        ret, model = self._device(handle, "nvmlDeviceGetCudaComputeCapability")
        if ret == SUCCESS:
            _put(major, c_int, model.spec.compute_capability[0])
            _put(minor, c_int, model.spec.compute_capability[1])
        return ret

    @_export("nvmlDeviceGetMigMode", args=(_P, _P, _P))
    def _mig_mode(self, handle, current, pending):
        ret, _ = self._device(handle, "nvmlDeviceGetMigMode")
        if ret == SUCCESS:
            _put(current, c_uint, 0)
            _put(pending, c_uint, 0)
        return ret

    # --- power and energy -----------------------------------------------------------------------------------
    @_export("nvmlDeviceGetTotalEnergyConsumption", args=(_P, _P))
    def _energy(self, handle, out):
        ret, model = self._device(handle, "nvmlDeviceGetTotalEnergyConsumption")
        if ret == SUCCESS:
            _put(out, c_ulonglong, model.counter_mj(self.clock()))
        return ret

    @_export("nvmlDeviceGetPowerUsage", args=(_P, _P))
    def _power_usage(self, handle, out):
        ret, model = self._device(handle, "nvmlDeviceGetPowerUsage")
        if ret == SUCCESS:
            _put(out, c_uint, int(round(model.average_power_w(self.clock()) * 1000)))
        return ret

    @_export("nvmlDeviceGetFieldValues", args=(_P, c_int, _P))
    def _field_values(self, handle, count, values):
        ret, model = self._device(handle, "nvmlDeviceGetFieldValues")
        if ret:
            return ret
        if count < 0 or values is None:
            return INVALID_ARGUMENT
        now = self.clock()
        for field in (_FieldValue * count).from_address(values):
            field.timestamp, field.latencyUsec = int(model.tick(now) * 1e6), 0
            field.nvmlReturn = SUCCESS
            if field.fieldId == FI_DEV_POWER_INSTANT and self.scenario.instant_power:
                field.valueType, field.value.uiVal = VALUE_TYPE_UNSIGNED_INT, int(round(model.instant_power_w(now) * 1000))
            elif field.fieldId == FI_DEV_POWER_AVERAGE:
                field.valueType, field.value.uiVal = VALUE_TYPE_UNSIGNED_INT, int(round(model.average_power_w(now) * 1000))
            elif field.fieldId == FI_DEV_TOTAL_ENERGY_CONSUMPTION:
                field.valueType, field.value.ullVal = VALUE_TYPE_UNSIGNED_LONG_LONG, model.counter_mj(now)
            else:
                field.nvmlReturn = NOT_SUPPORTED
        return SUCCESS

    @_export("nvmlDeviceGetPowerManagementLimit", "nvmlDeviceGetEnforcedPowerLimit", args=(_P, _P))
    def _power_limit(self, handle, out):
        ret, model = self._device(handle, "nvmlDeviceGetPowerManagementLimit")
        if ret == SUCCESS:
            _put(out, c_uint, int(round(model.power_limit_w() * 1000)))
        return ret

    @_export("nvmlDeviceGetPowerManagementDefaultLimit", args=(_P, _P))
    def _default_limit(self, handle, out):
        ret, model = self._device(handle, "nvmlDeviceGetPowerManagementDefaultLimit")
        if ret == SUCCESS:
            _put(out, c_uint, int(round(model.spec.power_limit_default_w * 1000)))
        return ret

    @_export("nvmlDeviceGetPowerManagementLimitConstraints", args=(_P, _P, _P))
    def _limit_constraints(self, handle, lo, hi):
        ret, model = self._device(handle, "nvmlDeviceGetPowerManagementLimitConstraints")
        if ret == SUCCESS:
            _put(lo, c_uint, int(round(model.spec.power_limit_min_w * 1000)))
            _put(hi, c_uint, int(round(model.spec.power_limit_max_w * 1000)))
        return ret

    @_export("nvmlDeviceSetPowerManagementLimit", args=(_P, c_uint))
    def _set_power_limit(self, handle, limit_mw):
        ret, model = self._setter(handle, "nvmlDeviceSetPowerManagementLimit")
        if ret:
            return ret
        spec = model.spec
        if not spec.power_limit_min_w * 1000 <= limit_mw <= spec.power_limit_max_w * 1000:
            return INVALID_ARGUMENT
        history = [*model.settings()["limit_history"], [self.clock(), limit_mw / 1000.0]]
        default = limit_mw == int(round(spec.power_limit_default_w * 1000))
        self.state.update(spec.uuid, power_limit_mw=None if default else limit_mw, limit_history=history)
        return SUCCESS

    # --- clocks ------------------------------------------------------------------------------------------------
    def _clock_of(self, model: DeviceModel, kind: int, now: float) -> int | None:
        if kind in (CLOCK_SM, CLOCK_GRAPHICS):
            return model.sm_clock_mhz(now)
        if kind == CLOCK_MEM:
            return model.memory_clock_mhz()
        return None

    @_export("nvmlDeviceGetClockInfo", args=(_P, c_uint, _P))
    def _clock_info(self, handle, kind, out):
        ret, model = self._device(handle, "nvmlDeviceGetClockInfo")
        if ret:
            return ret
        value = self._clock_of(model, kind, self.clock())
        if value is None:
            return NOT_SUPPORTED
        _put(out, c_uint, value)
        return SUCCESS

    @_export("nvmlDeviceGetMaxClockInfo", args=(_P, c_uint, _P))
    def _max_clock(self, handle, kind, out):
        ret, model = self._device(handle, "nvmlDeviceGetMaxClockInfo")
        if ret:
            return ret
        if kind in (CLOCK_SM, CLOCK_GRAPHICS):
            _put(out, c_uint, model.spec.sm_clock_max_mhz)
        elif kind == CLOCK_MEM:
            _put(out, c_uint, max(model.spec.memory_clocks_mhz))
        else:
            return NOT_SUPPORTED
        return SUCCESS

    @_export("nvmlDeviceGetApplicationsClock", "nvmlDeviceGetDefaultApplicationsClock", args=(_P, c_uint, _P))
    def _applications_clock(self, handle, kind, out):
        ret, model = self._device(handle, "nvmlDeviceGetApplicationsClock")
        if ret:
            return ret
        mem, sm = model.applications_clocks()
        value = {CLOCK_SM: sm, CLOCK_GRAPHICS: sm, CLOCK_MEM: mem}.get(kind)
        if value is None:
            return NOT_SUPPORTED
        _put(out, c_uint, value)
        return SUCCESS

    @_export("nvmlDeviceSetApplicationsClocks", args=(_P, c_uint, c_uint))
    def _set_applications_clocks(self, handle, mem, sm):
        ret, model = self._setter(handle, "nvmlDeviceSetApplicationsClocks")
        if ret:
            return ret
        if mem not in model.spec.memory_clocks_mhz or sm not in model.spec.supported_sm_clocks:
            return INVALID_ARGUMENT
        self.state.update(model.spec.uuid, applications_clocks=[mem, sm])
        return SUCCESS

    @_export("nvmlDeviceResetApplicationsClocks", args=(_P,))
    def _reset_applications_clocks(self, handle):
        ret, model = self._setter(handle, "nvmlDeviceResetApplicationsClocks")
        if ret == SUCCESS:
            self.state.update(model.spec.uuid, applications_clocks=None)
        return ret

    @_export("nvmlDeviceGetSupportedMemoryClocks", args=(_P, _P, _P))
    def _supported_memory_clocks(self, handle, count, clocks):
        ret, model = self._device(handle, "nvmlDeviceGetSupportedMemoryClocks")
        return ret if ret else _put_array(count, clocks, sorted(model.spec.memory_clocks_mhz, reverse=True))

    @_export("nvmlDeviceGetSupportedGraphicsClocks", args=(_P, c_uint, _P, _P))
    def _supported_graphics_clocks(self, handle, mem, count, clocks):
        ret, model = self._device(handle, "nvmlDeviceGetSupportedGraphicsClocks")
        if ret:
            return ret
        if mem not in model.spec.memory_clocks_mhz:
            return INVALID_ARGUMENT
        return _put_array(count, clocks, list(model.spec.supported_sm_clocks))

    def _lock_clocks(self, handle, function: str, lo: int, hi: int, supported, key: str) -> int:
        ret, model = self._setter(handle, function)
        if ret:
            return ret
        values = supported(model.spec)
        if lo > hi or lo < min(values) or hi > max(values):
            return INVALID_ARGUMENT
        self.state.update(model.spec.uuid, **{key: [lo, hi]})
        return SUCCESS

    @_export("nvmlDeviceSetGpuLockedClocks", args=(_P, c_uint, c_uint))
    def _set_locked_sm(self, handle, lo, hi):
        return self._lock_clocks(handle, "nvmlDeviceSetGpuLockedClocks", lo, hi, lambda s: s.supported_sm_clocks,
                          "locked_sm_clocks")

    @_export("nvmlDeviceSetMemoryLockedClocks", args=(_P, c_uint, c_uint))
    def _set_locked_mem(self, handle, lo, hi):
        return self._lock_clocks(handle, "nvmlDeviceSetMemoryLockedClocks", lo, hi, lambda s: s.memory_clocks_mhz,
                          "locked_memory_clocks")

    @_export("nvmlDeviceResetGpuLockedClocks", args=(_P,))
    def _reset_locked_sm(self, handle):
        ret, model = self._setter(handle, "nvmlDeviceResetGpuLockedClocks")
        if ret == SUCCESS:
            self.state.update(model.spec.uuid, locked_sm_clocks=None)
        return ret

    @_export("nvmlDeviceResetMemoryLockedClocks", args=(_P,))
    def _reset_locked_mem(self, handle):
        ret, model = self._setter(handle, "nvmlDeviceResetMemoryLockedClocks")
        if ret == SUCCESS:
            self.state.update(model.spec.uuid, locked_memory_clocks=None)
        return ret

    @_export("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons", args=(_P, _P))
    def _clock_event_reasons(self, handle, out):
        ret, model = self._device(handle, "nvmlDeviceGetCurrentClocksEventReasons")
        if ret == SUCCESS:
            _put(out, c_ulonglong, model.clock_event_reasons(self.clock()))
        return ret

    # --- the rest -----------------------------------------------------------------------------------------------
    @_export("nvmlDeviceGetPersistenceMode", args=(_P, _P))
    def _persistence(self, handle, out):
        ret, model = self._device(handle, "nvmlDeviceGetPersistenceMode")
        if ret == SUCCESS:
            _put(out, c_uint, int(model.persistence()))
        return ret

    @_export("nvmlDeviceSetPersistenceMode", args=(_P, c_uint))
    def _set_persistence(self, handle, mode):
        ret, model = self._setter(handle, "nvmlDeviceSetPersistenceMode")
        if ret:
            return ret
        if mode not in (0, 1):
            return INVALID_ARGUMENT
        self.state.update(model.spec.uuid,
                          persistence=None if bool(mode) == model.spec.persistence_default else bool(mode))
        return SUCCESS

    @_export("nvmlDeviceGetTemperature", args=(_P, c_uint, _P))
    def _temperature(self, handle, sensor, out):
        ret, model = self._device(handle, "nvmlDeviceGetTemperature")
        if ret:
            return ret
        if sensor != TEMPERATURE_GPU:
            return INVALID_ARGUMENT
        _put(out, c_uint, model.temperature_c(self.clock()))
        return SUCCESS

    @_export("nvmlDeviceGetUtilizationRates", args=(_P, _P))
    def _utilization(self, handle, out):
        ret, model = self._device(handle, "nvmlDeviceGetUtilizationRates")
        if ret == SUCCESS:
            util = _Utilization.from_address(out)
            util.gpu = model.utilization_pct(self.clock())
            util.memory = util.gpu // 2
        return ret

    def _memory(self, model: DeviceModel) -> tuple[int, int]:
        total = model.spec.memory_total_mib * 2**20
        used = int(model.memory_used_mib(self.clock()) * 2**20)
        return total, min(used, total)

    @_export("nvmlDeviceGetMemoryInfo", args=(_P, _P))
    def _memory_info(self, handle, out):
        ret, model = self._device(handle, "nvmlDeviceGetMemoryInfo")
        if ret == SUCCESS:
            mem = _Memory.from_address(out)
            mem.total, mem.used = self._memory(model)
            mem.free = mem.total - mem.used
        return ret

    @_export("nvmlDeviceGetMemoryInfo_v2", args=(_P, _P))
    def _memory_info_v2(self, handle, out):
        ret, model = self._device(handle, "nvmlDeviceGetMemoryInfo_v2")
        if ret == SUCCESS:
            mem = _MemoryV2.from_address(out)
            mem.total, mem.used = self._memory(model)
            mem.reserved, mem.free = 0, mem.total - mem.used
        return ret

    @_export("nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2", args=(_P, _P, _P))
    def _processes(self, handle, count, infos):
        ret, model = self._device(handle, "nvmlDeviceGetComputeRunningProcesses")
        if ret:
            return ret
        procs = model.spec.processes
        room = c_uint.from_address(count).value
        _put(count, c_uint, len(procs))
        if not procs:
            return SUCCESS
        if infos is None or room < len(procs):
            return INSUFFICIENT_SIZE
        for slot, (pid, mib) in zip((_ProcessInfo * len(procs)).from_address(infos), procs):
            slot.pid, slot.usedGpuMemory = pid, mib * 2**20
            slot.gpuInstanceId = slot.computeInstanceId = 0xFFFFFFFF
        return SUCCESS


def exported_functions() -> list[str]:
    """The NVML functions this simulated driver exports (any other name: NVML_ERROR_FUNCTION_NOT_FOUND)."""
    return sorted(_EXPORTS)

