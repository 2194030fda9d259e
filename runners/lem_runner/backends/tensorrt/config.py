"""The ``tensorrt:`` section: TensorRT-LLM ``LLM(...)`` arguments."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lem_runner.contract.engine_args import checked_pass_through
from lem_runner.contract.section import Section

#: TensorRT-LLM ``LLM(...)`` arguments lem sets from its own fields -> that field
OWNED_TENSORRT = {
    "model": "model", "tokenizer": "model", "dtype": "dtype", "backend": "tensorrt.llm_backend",
    "load_format": "synthetic_weights", "max_batch_size": "tensorrt.max_batch_size",
    "max_num_tokens": "tensorrt.max_num_tokens", "max_seq_len": "tensorrt.max_seq_len",
    "max_input_len": "max_input_tokens", "tensor_parallel_size": "tensorrt.tensor_parallel_size",
    "pipeline_parallel_size": "tensorrt.pipeline_parallel_size", "quant_config": "tensorrt.quantization",
    "kv_cache_config": "tensorrt.kv_cache_dtype / kv_cache_free_gpu_memory_fraction / kv_cache_enable_block_reuse",
}


class TensorRTConfig(Section):
    """TensorRT-LLM through its ``tensorrt_llm.LLM`` API. Fields map onto ``LLM(...)`` arguments and its
    ``KvCacheConfig`` / ``QuantConfig``; sampling comes from the experiment as for the other backends."""

    llm_backend: Literal["pytorch", "tensorrt"] = Field(
        "pytorch", description="TRT-LLM's PyTorch workflow (default), or build and run a TensorRT engine"
    )
    max_batch_size: int | None = Field(None, ge=1, le=65536)
    max_num_tokens: int | None = Field(None, ge=16, le=1_048_576)
    max_seq_len: int | None = Field(None, ge=16, le=1_048_576)
    tensor_parallel_size: int = Field(1, ge=1, le=64)
    pipeline_parallel_size: int = Field(1, ge=1, le=64)
    quantization: Literal["fp8", "int4_awq", "w4a8_awq", "int8_sq", "nvfp4"] | None = None
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"
    kv_cache_free_gpu_memory_fraction: float = Field(0.9, gt=0, le=1)
    kv_cache_enable_block_reuse: bool = Field(
        False, description="off by default: warmup runs the same prompts, so reused KV blocks would hide prefill work"
    )

    @model_validator(mode="after")
    def _quantization_needs_an_engine_build(self) -> TensorRTConfig:
        if self.quantization and self.llm_backend == "pytorch":
            raise ValueError("quantization needs llm_backend 'tensorrt'; the PyTorch workflow reads "
                             "quantization from a pre-quantized checkpoint")
        return self
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="more LLM(...) arguments, passed through: each key must be a field of the "
        "runner's TensorRT-LLM TorchLlmArgs (llm_backend pytorch) or TrtLlmArgs (tensorrt), checked in the runner "
        "before loading, and not one lem sets from a field of its own (set the field)")

    @field_validator("engine_args")
    @classmethod
    def _engine_args_own(cls, v: dict[str, Any]) -> dict[str, Any]:
        return checked_pass_through("tensorrt.engine_args", v, OWNED_TENSORRT)
