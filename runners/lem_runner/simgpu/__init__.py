"""A simulated NVIDIA driver for CI: lem's real NVML code runs unchanged on the real nvidia-ml-py (``pynvml``) module
— its wrappers, structs, units and ``NVMLError_*`` exceptions — with only the C library underneath replaced.

Usage. Write a scenario (JSON, or YAML where PyYAML is installed) and point ``LEM_SIMULATED_GPU`` at it::

    {"t0": 1765000000.0,                       # epoch s of trace time 0 (absent: set in the state file at first use)
     "devices": [                              # any order; NVML enumerates them by pci_bus_id
       {"uuid": "GPU-...", "pci_bus_id": "00000000:1B:00.0", "power": 95.0},
       {"uuid": "GPU-...", "pci_bus_id": "00000000:3D:00.0", "cuda_speed": 2,   # CUDA's FASTEST_FIRST puts it first
        "power": {"segments": [{"s": 2, "w": 80}, {"s": 3, "from_w": 80, "to_w": 300}, {"s": 5, "w": 300}],
                  "repeat": true},
        "power_limit_w": {"default": 700, "min": 200, "max": 700}}],
     "root": true,                             # false: every setter answers NVML_ERROR_NO_PERMISSION
     "missing_functions": ["nvmlDeviceGetFieldValues"]}   # an older driver: NVML_ERROR_FUNCTION_NOT_FOUND

``lem_runner.contract.nvml`` (the one NVML access module) installs the simulator whenever that variable is set, in
the controller, the runner and a container (the Docker launcher mounts the scenario's folder and passes the
variable on). Results are labelled: the energy source is ``simgpu_nvml_counter`` and the ``simulated_device`` quality
flag is set. Settings a setter changed persist in the state file (``<scenario>.state.json`` beside it, or the
scenario's ``state_file``) until restored, as on a real GPU; ``python -m lem_runner.simgpu show|reset SCENARIO``
prints or clears them. The trace is a function of wall time from ``t0``, so a test computes the true energy of any
wall-clock span itself: the integral of min(trace, power limit). The counter (mJ) advances every
``energy_update_s`` (0.1 s), holding the integral at its last update; ``nvmlDeviceGetPowerUsage`` is the mean over
the last ``power_average_s`` (1 s) as of that update, ``NVML_FI_DEV_POWER_INSTANT`` the power at it (both mW).

Why ctypes callbacks rather than a shared library built with gcc. pynvml looks every function up by name on
``nvmlLib`` (``_nvmlGetFunctionPointer``, cached in ``_nvmlGetFunctionPointer_cache``) and calls it through libffi;
an object in ``nvmlLib`` whose attributes are ``CFUNCTYPE`` pointers is, to pynvml, a loaded library. The callbacks
receive raw integers and addresses and write through them in nvml.h's layouts, so pynvml's marshalling, struct
reading, unit handling and error mapping are exercised for real, and a missing export fails as on a real old
driver. A C library would need a compiler wherever tests or images run (the runner images carry none), and the
scenario, its trace arithmetic and the cross-process state would have to be written in C; here they are a few
hundred lines of Python that a test can read. What this does not cover: a process that imports pynvml without
lem's access module (an engine's own NVML calls) sees the real library, and pynvml's ``CDLL`` load itself is
skipped (``nvmlLib`` is already set).
"""

from __future__ import annotations

import os

#: names a scenario file; set, every NVML user in lem talks to the simulated driver
ENV = "LEM_SIMULATED_GPU"
#: what results name as their energy source when it is the simulated device
SOURCE_NAME = "simgpu_nvml_counter"


def scenario_path(environ=None) -> str | None:
    value = (os.environ if environ is None else environ).get(ENV, "").strip()
    return value or None


def install(pynvml, path: str):
    """Make ``pynvml`` talk to the simulated driver of the scenario at ``path`` (kept when already so). Returns the
    library object. Raises ScenarioError for a bad scenario."""
    from lem_runner.simgpu.library import SimulatedNvmlLibrary
    from lem_runner.simgpu.scenario import load_scenario

    current = getattr(pynvml, "nvmlLib", None)
    if isinstance(current, SimulatedNvmlLibrary) and str(current.scenario.path) == os.path.realpath(path):
        return current
    with pynvml.libLoadLock:
        library = SimulatedNvmlLibrary(load_scenario(path))
        pynvml.nvmlLib = library
        pynvml._nvmlGetFunctionPointer_cache.clear()
    return library


def uninstall(pynvml) -> None:
    """Drop the simulated driver, so the next nvmlInit loads the real one."""
    from lem_runner.simgpu.library import SimulatedNvmlLibrary

    if isinstance(getattr(pynvml, "nvmlLib", None), SimulatedNvmlLibrary):
        with pynvml.libLoadLock:
            pynvml.nvmlLib = None
            pynvml._nvmlGetFunctionPointer_cache.clear()
            pynvml._nvmlLib_refcount = 0
