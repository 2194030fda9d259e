"""The ``vllm:`` section: vLLM engine arguments (``vllm.LLM`` / ``EngineArgs``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lem_runner.contract.section import Section


class VLLMConfig(Section):
    """vLLM offline inference (``vllm.LLM``). Fields map onto the engine's own arguments; sampling comes from the
    experiment's ``decoding``, ``max_output_tokens`` and ``force_output_length`` (→ ``ignore_eos``)."""

    max_model_len: int | None = Field(None, ge=16, le=1_048_576, description="context length; None: the model's")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_num_seqs: int | None = Field(None, ge=1, le=65536, description="sequences scheduled together (batch)")
    max_num_batched_tokens: int | None = Field(None, ge=16, le=1_048_576)
    tensor_parallel_size: int = Field(1, ge=1, le=64)
    pipeline_parallel_size: int = Field(1, ge=1, le=64)
    enforce_eager: bool | None = Field(
        None,
        description="no CUDA graphs / torch.compile. None: eager on CPU (vLLM's compile path needs a C++ compiler and "
        "compiles for minutes on a few cores), vLLM's own default (compiled) on GPU; false forces compilation",
    )
    quantization: Literal["awq", "gptq", "fp8", "compressed-tensors"] | None = None
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    enable_prefix_caching: bool = Field(
        False, description="off by default: warmup runs the same prompts, so a cached prefix would hide prefill work"
    )
    block_size: Literal[8, 16, 32, 64, 128] | None = None
    cpu_kvcache_space_gib: int = Field(1, ge=1, le=1024, description="KV cache on CPU runs (VLLM_CPU_KVCACHE_SPACE)")

    @model_validator(mode="after")
    def _batched_tokens_cover_a_sequence(self) -> VLLMConfig:
        if self.max_num_batched_tokens and self.max_model_len and self.max_num_batched_tokens < self.max_model_len:
            raise ValueError("max_num_batched_tokens must be >= max_model_len (vLLM refuses a smaller budget)")
        return self
