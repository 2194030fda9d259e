"""Facts about the host the controller needs before choosing a launcher or an image."""

from __future__ import annotations

import importlib.util

from lem_runner.contract import nvml


def gpu_count() -> int:
    """NVIDIA GPUs NVML sees on the host for compute (0 when NVML is missing). Simulated GPUs (LEM_SIMULATED_GPU)
    compute nothing — the run's compute is on the CPU and a container gets the simulator, not a GPU — so 0."""
    if nvml.simulated():
        return 0
    return nvml.device_count()


def gpu_uuid(entry: str) -> str | None:
    """The UUID of the host GPU an NVML index ("1") names, through NVML; None when NVML cannot tell."""
    try:
        with nvml.session() as pynvml:
            return nvml.identify(pynvml, entry)[1]
    except Exception:  # no NVML, or no such GPU
        return None


def backend_modules(backend: str) -> tuple[str, ...]:
    """Modules a backend needs to run in the host's Python environment (its spec's host_modules)."""
    from lem_runner.contract import registry

    spec = registry().get(backend)
    return spec.host_modules if spec else (backend,)


def backend_installed(backend: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in backend_modules(backend))
