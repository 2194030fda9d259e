"""The one way lem reaches NVML, for the runner (energy, device binding, the environment record) and the controller
(GPU state, doctor, memory checks, the host inventory): load pynvml, init and shutdown, and find a GPU by NVML index,
UUID or PCI bus id.

When ``LEM_SIMULATED_GPU`` names a scenario file, pynvml is pointed at lem's simulated driver (``lem_runner.simgpu``, a
leaf package that imports nothing of lem's) before its first call, so every caller here measures the simulated
device through the real pynvml; results say so (``SIMULATED_SOURCE``). NVML counts nvmlInit/nvmlShutdown, so each
``init`` must be paired with one ``shutdown`` (``session`` does it), and a handle is valid only while a count is held.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

#: names a simulated-GPU scenario file; set, NVML is lem's simulated driver (lem_runner.simgpu)
SIMULATED_ENV = "LEM_SIMULATED_GPU"
#: the energy source's name when the device is simulated
SIMULATED_SOURCE = "simgpu_nvml_counter"


class NvmlUnavailable(RuntimeError):
    """pynvml is not installed, or NVML cannot be initialised here (no driver, no GPU, a bad simulator scenario)."""


def simulated(environ=None) -> str | None:
    """The simulated-GPU scenario in force (its path as given), or None on real hardware."""
    value = (os.environ if environ is None else environ).get(SIMULATED_ENV, "").strip()
    return value or None


def simulated_files(environ=None) -> list[str]:
    """The simulated-GPU scenario (absolute) and its state file, for a container to be given; [] on real GPUs. A
    scenario that cannot be read gives itself alone (the runner then reports why NVML is unavailable)."""
    scenario = simulated(environ)
    if scenario is None:
        return []
    path = os.path.realpath(scenario)
    from lem_runner.simgpu.scenario import ScenarioError, load_scenario

    try:
        return [path, os.path.realpath(load_scenario(path).state_file)]
    except ScenarioError:
        return [path]


def load():
    """pynvml, talking to the simulated driver when ``LEM_SIMULATED_GPU`` is set and to the real one otherwise."""
    try:
        import pynvml
    except ImportError:
        raise NvmlUnavailable("nvidia-ml-py (pynvml) is not installed") from None
    from lem_runner import simgpu  # a leaf: the simulated C library, below this module

    scenario = simulated()
    if scenario is not None:
        from lem_runner.simgpu.scenario import ScenarioError

        try:
            simgpu.install(pynvml, scenario)
        except ScenarioError as exc:
            raise NvmlUnavailable(f"{SIMULATED_ENV}: {exc}") from None
    else:
        simgpu.uninstall(pynvml)
    return pynvml


def init():
    """Load pynvml and take one NVML init count; returns the module. Raises NvmlUnavailable with the reason."""
    pynvml = load()
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML unavailable: {exc}") from None
    return pynvml


def shutdown(pynvml) -> None:
    """Give back one init count (errors ignored: nothing is left to release)."""
    with contextlib.suppress(Exception):
        pynvml.nvmlShutdown()


@contextlib.contextmanager
def session() -> Iterator:
    """``with session() as pynvml:`` — NVML initialised for the block."""
    pynvml = init()
    try:
        yield pynvml
    finally:
        shutdown(pynvml)


def handle(pynvml, entry: str):
    """The device handle of a GPU named by NVML index ("1"), UUID ("GPU-…", "MIG-…") or PCI bus id ("0000:3D:00.0").
    Raises pynvml.NVMLError (NVMLError_NotFound, NVMLError_InvalidArgument) when there is none."""
    entry = entry.strip()
    if entry.isdigit():
        return pynvml.nvmlDeviceGetHandleByIndex(int(entry))
    if ":" in entry and not entry.upper().startswith(("GPU-", "MIG-")):
        return pynvml.nvmlDeviceGetHandleByPciBusId(entry)
    return pynvml.nvmlDeviceGetHandleByUUID(entry)


def text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def identify(pynvml, entry: str) -> tuple[int, str]:
    """(NVML index, UUID) of the GPU ``entry`` names. Raises pynvml.NVMLError."""
    h = handle(pynvml, entry)
    index = int(entry) if entry.strip().isdigit() else int(pynvml.nvmlDeviceGetIndex(h))
    return index, text(pynvml.nvmlDeviceGetUUID(h))


def or_none(fn: Callable, *args):
    """``fn(*args)``, or None when this GPU or driver does not support the query; bytes come back as text."""
    try:
        value = fn(*args)
    except Exception:  # an unsupported query leaves its field None rather than failing the caller
        return None
    return value.decode() if isinstance(value, bytes) else value


def device_count() -> int:
    """GPUs NVML sees here (0 without NVML)."""
    try:
        with session() as pynvml:
            return int(pynvml.nvmlDeviceGetCount())
    except Exception:  # no NVML, or it failed mid-query: no GPU lem can use
        return 0
