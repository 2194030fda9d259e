"""CPU package energy from RAPL through the Linux powercap interface (``/sys/class/powercap/intel-rapl:N``).

Each top-level zone is a package; ``energy_uj`` is a cumulative counter wrapping at ``max_energy_range_uj``. Since
2020 kernels make it readable by root only, so on most machines this source is unavailable and says so.
"""

from __future__ import annotations

import re
from pathlib import Path

from lem_runner.contract.energy import DeviceIdleState
from lem_runner.energy.device import DeviceSample
from lem_runner.energy.tracker import CounterEnergySource

POWERCAP = Path("/sys/class/powercap")
METHOD = "RAPL package energy counters (powercap energy_uj) read at the window's start and end, summed over packages"
_PACKAGE_ZONE = re.compile(r"intel-rapl:\d+")


class RaplDevice:
    """One RAPL package zone."""

    uuid = None

    def __init__(self, zone: Path) -> None:
        self._energy = zone / "energy_uj"
        name = (zone / "name").read_text(encoding="utf-8").strip() if (zone / "name").is_file() else zone.name
        self.id = f"cpu:{name}"
        self.wrap_mj = int((zone / "max_energy_range_uj").read_text(encoding="utf-8")) / 1000.0
        self.energy_mj()  # raises PermissionError where only root may read it

    def energy_mj(self) -> float:
        return int(self._energy.read_text(encoding="utf-8")) / 1000.0

    def sample(self) -> DeviceSample:
        return DeviceSample()

    def other_processes(self) -> list[int] | None:
        return None

    def persistence_mode(self) -> bool | None:
        return None

    def idle_state(self) -> DeviceIdleState:
        return DeviceIdleState(device=self.id)  # a CPU package reports none of what a GPU's idle power depends on


def rapl_devices(root: Path = POWERCAP) -> tuple[list[RaplDevice], str | None]:
    """The readable package zones under ``root``, or none and the exact reason."""
    zones = sorted(p for p in root.glob("intel-rapl:*") if _PACKAGE_ZONE.fullmatch(p.name)) if root.is_dir() else []
    if not zones:
        return [], f"no RAPL package zone under {root}"
    try:
        return [RaplDevice(z) for z in zones], None
    except PermissionError:
        return [], f"RAPL counters under {root} are readable by root only on this kernel"
    except (OSError, ValueError) as exc:
        return [], f"RAPL counters under {root} not readable: {exc}"


class RaplEnergySource(CounterEnergySource):
    def __init__(self, devices: list[RaplDevice], sample_hz: float = 10.0) -> None:
        super().__init__(devices, name="rapl", method=METHOD, sample_hz=sample_hz)
