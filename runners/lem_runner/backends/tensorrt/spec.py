"""The tensorrt backend's spec: TensorRT-LLM's ``LLM`` API, NVIDIA GPUs only."""

from __future__ import annotations

from typing import Any

from lem_runner.backends.tensorrt.config import TensorRTConfig
from lem_runner.contract.backends import BackendSpec, ImageSpec, MemoryTraits, tp_times_pp

#: TensorRT-LLM's max_batch_size when unset (its build default; not checked against a running engine here)
DEFAULT_BATCH = 2048


def _sequence_fits(cfg: Any, section: TensorRTConfig) -> None:
    budget = cfg.max_input_tokens + cfg.max_output_tokens
    if section.max_seq_len and budget > section.max_seq_len:
        raise ValueError(f"tensorrt.max_seq_len {section.max_seq_len} is shorter than max_input_tokens + "
                         f"max_output_tokens = {budget}")


def _workflow_fits(cfg: Any, section: TensorRTConfig) -> None:
    if cfg.synthetic_weights and section.llm_backend == "tensorrt":
        raise ValueError("synthetic_weights needs tensorrt.llm_backend 'pytorch': an engine build reads a checkpoint")
    if cfg.scenario == "serving" and cfg.serving.endpoint is None and section.llm_backend != "pytorch":
        raise ValueError("scenario serving with tensorrt runs trtllm-serve on the PyTorch workflow: "
                         "tensorrt.llm_backend must be 'pytorch'")


def _engine_fields(cfg: Any) -> tuple[str, ...]:
    """A built TensorRT engine has a maximum input length: the prompt limit the run tokenises to defines it."""
    return ("max_input_tokens", "prompts.input_tokens") if cfg.tensorrt.llm_backend == "tensorrt" else ()


def _reuse_refusal(cfg: Any) -> str | None:
    if cfg.tensorrt.kv_cache_enable_block_reuse:
        return ("tensorrt.kv_cache_enable_block_reuse: reused KV blocks would carry one run's prompts into the next, "
                "and TensorRT-LLM's LLM API has no reset")
    return None


def _memory(cfg: Any, device_kind: str, device_memory_bytes: int | None, device_name: str) -> MemoryTraits:
    section: TensorRTConfig = cfg.tensorrt
    return MemoryTraits(batch=section.max_batch_size or DEFAULT_BATCH, prefill_tokens_cap=section.max_num_tokens)


SPEC = BackendSpec(
    name="tensorrt",
    order=20,
    config=TensorRTConfig,
    implementation="lem_runner.backends.tensorrt.backend:TensorRTBackend",
    summary="TensorRT-LLM LLM API (PyTorch workflow or a built engine), NVIDIA GPUs only",
    image=ImageSpec(extras={"gpu": "tensorrt"}, library="tensorrt-llm"),
    host_modules=("tensorrt_llm",),
    libraries=("tensorrt-llm", "tensorrt", "nvidia-modelopt", "torch", "transformers", "tokenizers", "pydantic",
               "nvidia-ml-py"),
    batch_field="max_batch_size",
    batch_meaning="requests the runtime batches together at most (in-flight batching)",
    engine_section_fields=tuple(TensorRTConfig.model_fields),  # every field is an LLM(...) argument
    device_kinds=("cuda",),
    gpu_count=tp_times_pp,
    short_names={"tensor_parallel_size": "tp", "pipeline_parallel_size": "pp"},
    gpu_count_rule="uses tensor_parallel_size x pipeline_parallel_size = {n} GPU(s)",
    shm_size="8g",  # MPI ranks exchange tensors through shared memory
    checks=(_sequence_fits, _workflow_fits),
    memory_traits=_memory,
    engine_check="lem_runner.backends.tensorrt.check:tensorrt_problems",
    server_command="lem_runner.backends.tensorrt.server:tensorrt_command",
    engine_fields_of=_engine_fields,
    reuse_refusal_of=_reuse_refusal,
    server_reuse_refusal=("trtllm-serve keeps KV blocks for reuse and has no route to empty them, so a kept server "
                          "would serve one run's prompts from the last run's cache"),
)
