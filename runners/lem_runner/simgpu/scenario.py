"""A simulated GPU host as data: its devices (identity, PCI and CUDA order, limits, clocks) and each device's power trace.

The trace is a function of wall time (``time.time()``) from the scenario's ``t0``, so anyone holding the scenario
can compute the true energy of any wall-clock span without asking the simulator. Every number here is in the units
the scenario file uses (watts, seconds, MHz, MiB); the library converts to NVML's (mW, mJ, bytes) at its boundary.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path


class ScenarioError(ValueError):
    """The scenario file is missing, unreadable or has a bad field (the message names the file and the field)."""


@dataclass(frozen=True)
class Segment:
    """``seconds`` of power going linearly from ``from_w`` to ``to_w`` (equal for a constant step); optional overrides
    of what the device reports meanwhile."""

    seconds: float
    from_w: float
    to_w: float
    temperature_c: float | None = None
    sm_clock_mhz: int | None = None
    utilization_pct: int | None = None
    reasons: int = 0  # clock-event reason bits reported during the segment (ORed with the derived ones)
    memory_used_mib: float | None = None


@dataclass(frozen=True)
class Trace:
    """Piecewise-linear power from the scenario's t0; before t0 and after the last segment (unless ``repeat``) it holds
    the first/last value."""

    segments: tuple[Segment, ...]
    repeat: bool = False

    @property
    def period_s(self) -> float:
        return sum(s.seconds for s in self.segments)

    def _locate(self, tau: float) -> tuple[Segment, float]:
        """The segment at trace time ``tau`` and the offset into it."""
        if tau <= 0:
            return self.segments[0], 0.0
        if self.repeat:
            tau = math.fmod(tau, self.period_s)
        for seg in self.segments:
            if tau < seg.seconds:
                return seg, tau
            tau -= seg.seconds
        last = self.segments[-1]
        return last, last.seconds

    def segment_at(self, tau: float) -> Segment:
        return self._locate(tau)[0]

    def power_w(self, tau: float, cap_w: float = math.inf) -> float:
        seg, off = self._locate(tau)
        p = seg.from_w + (seg.to_w - seg.from_w) * (off / seg.seconds if seg.seconds else 1.0)
        return min(p, cap_w)

    def energy_j(self, tau0: float, tau1: float, cap_w: float = math.inf) -> float:
        """Exact integral of min(power, cap) over trace time [tau0, tau1]."""
        if tau1 <= tau0:
            return 0.0
        return self._cumulative(tau1, cap_w) - self._cumulative(tau0, cap_w)

    def _cumulative(self, tau: float, cap: float) -> float:
        """Integral of min(power, cap) from trace time 0 to ``tau`` (negative before 0, at the first value)."""
        if tau <= 0:
            return tau * min(self.segments[0].from_w, cap)
        period = self.period_s
        total = 0.0
        if self.repeat:
            cycles = math.floor(tau / period)
            total += cycles * self._partial(period, cap)
            tau -= cycles * period
        elif tau > period:
            total += (tau - period) * min(self.segments[-1].to_w, cap)
            tau = period
        return total + self._partial(tau, cap)

    def _partial(self, tau: float, cap: float) -> float:
        """Integral from 0 to ``tau`` within one pass of the segments (0 <= tau <= period)."""
        total, start = 0.0, 0.0
        for seg in self.segments:
            if start >= tau:
                break
            end = min(start + seg.seconds, tau)
            if end > start:
                slope = (seg.to_w - seg.from_w) / seg.seconds
                total += _clipped_trapezoid(start, end, seg.from_w, seg.from_w + slope * (end - start), cap)
            start += seg.seconds
        return total


def _clipped_trapezoid(a: float, b: float, pa: float, pb: float, cap: float) -> float:
    """Integral over [a, b] of min(linear pa→pb, cap)."""
    if pa <= cap and pb <= cap:
        return (b - a) * (pa + pb) / 2
    if pa >= cap and pb >= cap:
        return (b - a) * cap
    x = a + (b - a) * (cap - pa) / (pb - pa)  # where the line crosses the cap
    if pa < cap:
        return (x - a) * (pa + cap) / 2 + (b - x) * cap
    return (x - a) * cap + (b - x) * (cap + pb) / 2


@dataclass(frozen=True)
class DeviceSpec:
    """One simulated GPU as NVML's documentation describes what it reports."""

    name: str
    uuid: str
    pci_bus_id: str  # NVML's form, e.g. 00000000:1B:00.0
    trace: Trace
    cuda_speed: float = 1.0  # CUDA_DEVICE_ORDER=FASTEST_FIRST (CUDA's default) puts the highest first
    memory_total_mib: int = 81559
    memory_used_mib: float = 512.0
    power_limit_default_w: float = 700.0
    power_limit_min_w: float = 200.0
    power_limit_max_w: float = 700.0
    idle_w: float = 70.0  # at or below this the device reports itself idle (clock-event reason GpuIdle)
    temperature_idle_c: float = 32.0
    temperature_per_w: float = 0.06
    sm_clock_max_mhz: int = 1980
    sm_clock_idle_mhz: int = 345
    memory_clocks_mhz: tuple[int, ...] = (2619,)
    sm_clocks_mhz: tuple[int, ...] = ()  # supported SM clocks (for every memory clock); empty: 15 MHz steps
    compute_capability: tuple[int, int] = (9, 0)
    persistence_default: bool = True
    energy_mj_at_t0: int = 1_000_000_000  # the counter counts since the driver loaded, not from zero
    processes: tuple[tuple[int, int], ...] = ()  # (pid, used MiB) of compute processes NVML reports
    unsupported: frozenset[str] = frozenset()  # NVML function names answering NVML_ERROR_NOT_SUPPORTED here

    @property
    def supported_sm_clocks(self) -> tuple[int, ...]:
        if self.sm_clocks_mhz:
            return tuple(sorted(self.sm_clocks_mhz, reverse=True))
        return tuple(range(self.sm_clock_max_mhz, 209, -15))


@dataclass(frozen=True)
class Scenario:
    path: Path
    devices: tuple[DeviceSpec, ...]  # in PCI bus order (NVML's enumeration order)
    t0: float | None  # epoch seconds of trace time 0; None: the state file's (set when it is created)
    state_file: Path
    energy_update_s: float = 0.1  # the total-energy counter and the power readings refresh this often
    power_average_s: float = 1.0  # nvmlDeviceGetPowerUsage averages over this (Ampere and newer)
    instant_power: bool = True  # NVML_FI_DEV_POWER_INSTANT answers (Hopper-era drivers)
    root: bool = True  # False: every setter answers NVML_ERROR_NO_PERMISSION, as for a non-root caller
    driver_version: str = "550.90.07"
    cuda_driver_version: int = 12040
    missing_functions: frozenset[str] = frozenset()  # absent from this "driver": NVML_ERROR_FUNCTION_NOT_FOUND
    raw: dict = field(default_factory=dict, compare=False)

    def device_by_uuid(self, uuid: str) -> DeviceSpec | None:
        return next((d for d in self.devices if d.uuid == uuid), None)


def read_document(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the simulated-GPU scenario ({exc.strerror})") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ScenarioError(f"{path}: a YAML scenario needs PyYAML; write it as JSON") from None
            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except ScenarioError:
        raise
    except Exception as exc:  # a parse error of either format: one line naming the file
        raise ScenarioError(f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: "
                            f"{str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping with a 'devices' list")
    return doc


def _segment(path: Path, where: str, raw) -> Segment:
    if not isinstance(raw, dict) or "s" not in raw or not ("w" in raw or ("from_w" in raw and "to_w" in raw)):
        raise ScenarioError(f"{path}: {where}: a segment is {{s: seconds, w: watts}} or {{s, from_w, to_w}}")
    try:
        seconds = float(raw["s"])
        a = float(raw.get("from_w", raw.get("w")))
        b = float(raw.get("to_w", raw.get("w")))
    except (TypeError, ValueError):
        raise ScenarioError(f"{path}: {where}: s, w, from_w and to_w are numbers") from None
    if seconds < 0 or a < 0 or b < 0:
        raise ScenarioError(f"{path}: {where}: seconds and watts are >= 0")
    return Segment(seconds, a, b, raw.get("temp_c"), raw.get("sm_mhz"), raw.get("util"), int(raw.get("reasons", 0)),
                   raw.get("memory_used_mib"))


def _trace(path: Path, where: str, raw) -> Trace:
    if isinstance(raw, (int, float)):
        return Trace((Segment(0.0, float(raw), float(raw)),))
    if isinstance(raw, list):
        raw = {"segments": raw}
    if not isinstance(raw, dict) or not raw.get("segments"):
        raise ScenarioError(f"{path}: {where}: power is watts, a list of segments, or {{segments: [...], repeat}}")
    segs = tuple(_segment(path, f"{where}.segments[{i}]", s) for i, s in enumerate(raw["segments"]))
    trace = Trace(segs, bool(raw.get("repeat", False)))
    if trace.repeat and trace.period_s <= 0:
        raise ScenarioError(f"{path}: {where}: a repeating trace needs segments longer than 0 s")
    return trace


_DEVICE_KEYS = {"name", "uuid", "pci_bus_id", "power", "cuda_speed", "memory_total_mib", "memory_used_mib",
                "power_limit_w", "idle_w", "temperature_idle_c", "temperature_per_w", "sm_clock_max_mhz",
                "sm_clock_idle_mhz", "memory_clocks_mhz", "sm_clocks_mhz", "compute_capability", "persistence",
                "energy_mj_at_t0", "processes", "unsupported"}


def _device(path: Path, i: int, raw) -> DeviceSpec:
    where = f"devices[{i}]"
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: {where}: a device is a mapping")
    unknown = set(raw) - _DEVICE_KEYS
    if unknown:
        raise ScenarioError(f"{path}: {where}: unknown field(s) {', '.join(sorted(unknown))}")
    limit = raw.get("power_limit_w", {})
    if isinstance(limit, (int, float)):
        limit = {"default": limit}
    default_w = float(limit.get("default", 700.0))
    bus = str(raw.get("pci_bus_id", f"00000000:{0x1B + 0x22 * i:02X}:00.0")).upper()
    uuid = str(raw.get("uuid", f"GPU-5a1e0000-0000-4000-8000-{i:012x}"))
    if not uuid.startswith("GPU-"):
        raise ScenarioError(f"{path}: {where}.uuid: NVML GPU UUIDs start with 'GPU-'")
    return DeviceSpec(
        name=str(raw.get("name", "NVIDIA H100 80GB HBM3 (simulated)")),
        uuid=uuid,
        pci_bus_id=bus,
        trace=_trace(path, f"{where}.power", raw.get("power", 70.0)),
        cuda_speed=float(raw.get("cuda_speed", 1.0)),
        memory_total_mib=int(raw.get("memory_total_mib", 81559)),
        memory_used_mib=float(raw.get("memory_used_mib", 512.0)),
        power_limit_default_w=default_w,
        power_limit_min_w=float(limit.get("min", min(200.0, default_w))),
        power_limit_max_w=float(limit.get("max", default_w)),
        idle_w=float(raw.get("idle_w", 70.0)),
        temperature_idle_c=float(raw.get("temperature_idle_c", 32.0)),
        temperature_per_w=float(raw.get("temperature_per_w", 0.06)),
        sm_clock_max_mhz=int(raw.get("sm_clock_max_mhz", 1980)),
        sm_clock_idle_mhz=int(raw.get("sm_clock_idle_mhz", 345)),
        memory_clocks_mhz=tuple(int(c) for c in raw.get("memory_clocks_mhz", (2619,))),
        sm_clocks_mhz=tuple(int(c) for c in raw.get("sm_clocks_mhz", ())),
        compute_capability=tuple(raw.get("compute_capability", (9, 0))),  # type: ignore[arg-type]
        persistence_default=bool(raw.get("persistence", True)),
        energy_mj_at_t0=int(raw.get("energy_mj_at_t0", 1_000_000_000)),
        processes=tuple((int(p["pid"]), int(p.get("used_mib", 0))) for p in raw.get("processes", ())),
        unsupported=frozenset(raw.get("unsupported", ())),
    )


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file (JSON, or YAML where PyYAML is installed). Raises ScenarioError."""
    path = Path(path).resolve()
    doc = read_document(path)
    devices = doc.get("devices")
    if not isinstance(devices, list) or not devices:
        raise ScenarioError(f"{path}: devices: a non-empty list of simulated GPUs")
    specs = [_device(path, i, d) for i, d in enumerate(devices)]
    for key in ("uuid", "pci_bus_id"):
        values = [getattr(d, key) for d in specs]
        if len(set(values)) != len(values):
            raise ScenarioError(f"{path}: devices: each device needs its own {key}")
    specs.sort(key=lambda d: d.pci_bus_id)  # NVML enumerates in PCI bus order
    state = doc.get("state_file")
    state_file = (path.parent / state) if state else path.with_name(path.name + ".state.json")
    t0 = doc.get("t0")
    return Scenario(
        path=path, devices=tuple(specs), t0=float(t0) if t0 is not None else None, state_file=Path(state_file),
        energy_update_s=float(doc.get("energy_update_s", 0.1)),
        power_average_s=float(doc.get("power_average_s", 1.0)),
        instant_power=bool(doc.get("instant_power", True)),
        root=bool(doc.get("root", True)),
        driver_version=str(doc.get("driver_version", "550.90.07")),
        cuda_driver_version=int(doc.get("cuda_driver_version", 12040)),
        missing_functions=frozenset(doc.get("missing_functions", ())),
        raw=doc,
    )
