"""The pytorch backend's spec: transformers ``generate`` in static batches of ``pytorch.batch_size`` prompts."""

from __future__ import annotations

from typing import Any

from lem_runner.backends.pytorch.config import PyTorchConfig
from lem_runner.contract.backends import BackendSpec, ImageSpec, MemoryTraits


def _gpus(section: PyTorchConfig) -> int | None:
    """One GPU, or with device_map as many as devices lists (None: any number)."""
    return None if section.device_map is not None else 1


def _memory(cfg: Any, device_kind: str, device_memory_bytes: int | None, device_name: str) -> MemoryTraits:
    """A static batch of batch_size prompts; the eager/sdpa kernels may hold a layer's attention scores."""
    return MemoryTraits(batch=cfg.pytorch.batch_size, materialises_attention=True)


SPEC = BackendSpec(
    name="pytorch",
    order=0,  # the default backend
    config=PyTorchConfig,
    implementation="lem_runner.backends.pytorch.backend:PyTorchBackend",
    summary="transformers generate() on PyTorch, static batches",
    image=ImageSpec(
        extras={"gpu": "pytorch", "cpu": "pytorch"},
        library="transformers",
        # the image matches the host's stack, so an isolated run uses the same libraries as a local one
        pinned=("pydantic", "pydantic-core", "nvidia-ml-py", "pyarrow", "transformers", "tokenizers", "safetensors",
                "huggingface-hub", "accelerate"),
    ),
    host_modules=("torch", "transformers"),
    libraries=("torch", "transformers", "tokenizers", "accelerate", "pydantic", "nvidia-ml-py"),
    batch_field="batch_size",
    batch_meaning="prompts per generate() call (a static batch, padded to its longest prompt)",
    engine_section_fields=("attn_implementation", "torch_compile", "quantization", "device_map", "model_kwargs"),
    gpu_count=_gpus,
    gpu_count_rule="runs on one GPU; list exactly one index, or set pytorch.device_map to spread the model",
    shm_size="1g",
    memory_traits=_memory,
    engine_check="lem_runner.backends.pytorch.check:pytorch_problems",
    scores_continuations=True,
    gives_next_token_logprobs=True,
    gives_rolling_loglikelihood=True,
    server_command="lem_runner.backends.pytorch.server:pytorch_command",
    server_settings="lem_runner.backends.pytorch.server:pytorch_server_settings",
    # the offline default of 1 would serialise a server: its continuous batching takes up to 32 requests at once
    serving_defaults={"batch_size": 32},
)
