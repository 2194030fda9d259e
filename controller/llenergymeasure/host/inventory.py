"""Facts about the host the controller needs before choosing a launcher or an image."""

from __future__ import annotations

import importlib.util


def gpu_count() -> int:
    """NVIDIA GPUs NVML sees on the host (0 when NVML is missing)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:
        return 0


def gpu_uuid(entry: str) -> str | None:
    """The UUID of the host GPU an NVML index ("1") names, through NVML; None when NVML cannot tell."""
    try:
        import pynvml

        pynvml.nvmlInit()
        value = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(int(entry)))
    except Exception:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def backend_modules(backend: str) -> tuple[str, ...]:
    """Modules a backend needs to run in the host's Python environment (its spec's host_modules)."""
    from lem_runner.contract import registry

    spec = registry().get(backend)
    return spec.host_modules if spec else (backend,)


def backend_installed(backend: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in backend_modules(backend))
