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


#: modules a backend needs to run in the host's Python environment
BACKEND_MODULES = {"pytorch": ("torch", "transformers"), "vllm": ("vllm",), "tensorrt": ("tensorrt_llm",)}


def backend_installed(backend: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in BACKEND_MODULES.get(backend, (backend,)))
