"""The ``vllm:`` section: vLLM engine arguments (``vllm.LLM`` / ``EngineArgs``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lem_runner.contract.engine_args import checked_pass_through
from lem_runner.contract.section import Section

#: vLLM ``EngineArgs`` fields lem sets from its own fields -> that field
OWNED_VLLM = {
    "model": "model", "tokenizer": "model", "dtype": "dtype", "seed": "seed", "load_format": "synthetic_weights",
    "max_model_len": "vllm.max_model_len", "gpu_memory_utilization": "vllm.gpu_memory_utilization",
    "max_num_seqs": "vllm.max_num_seqs", "max_num_batched_tokens": "vllm.max_num_batched_tokens",
    "tensor_parallel_size": "vllm.tensor_parallel_size", "pipeline_parallel_size": "vllm.pipeline_parallel_size",
    "enforce_eager": "vllm.enforce_eager", "quantization": "vllm.quantization",
    "kv_cache_dtype": "vllm.kv_cache_dtype", "enable_prefix_caching": "vllm.enable_prefix_caching",
    "block_size": "vllm.block_size", "enable_chunked_prefill": "vllm.enable_chunked_prefill",
    "speculative_config": "vllm.speculative_config", "cpu_offload_gb": "vllm.cpu_offload_gb",
    "async_scheduling": "vllm.async_scheduling", "reasoning_parser": "vllm.reasoning_parser",
}


class SpeculativeConfig(Section):
    """vLLM speculative decoding (``EngineArgs.speculative_config``): a draft proposes tokens the model verifies in
    one step. Output is the same distribution; the work per token changes, which is why it is swept."""

    method: Literal["ngram", "draft_model", "eagle", "eagle3", "medusa", "mlp_speculator", "mtp", "suffix"] = Field(
        ..., description="how drafts are proposed: ngram (prompt lookup, no extra model), draft_model (a smaller "
        "model), eagle/eagle3/medusa/mlp_speculator/mtp (trained heads)")
    num_speculative_tokens: int = Field(..., ge=1, le=64, description="tokens proposed per step")
    model: str | None = Field(None, description="the draft model or heads (hub id, or a folder the runner can "
                              "read: a container run mounts only the main model); not for ngram/suffix")
    prompt_lookup_max: int | None = Field(None, ge=1, le=64, description="ngram: longest n-gram matched")
    prompt_lookup_min: int | None = Field(None, ge=1, le=64, description="ngram: shortest n-gram matched")

    @model_validator(mode="after")
    def _model_for_method(self) -> SpeculativeConfig:
        if self.method in ("ngram", "suffix") and self.model is not None:
            raise ValueError(f"model: method '{self.method}' proposes from the text itself, it takes no model")
        if self.method not in ("ngram", "suffix", "mtp") and self.model is None:
            raise ValueError(f"model: method '{self.method}' needs the draft model or heads")
        if self.method != "ngram" and (self.prompt_lookup_max or self.prompt_lookup_min):
            raise ValueError("prompt_lookup_max/min: only for method 'ngram'")
        return self


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
    enable_chunked_prefill: bool | None = Field(
        None, description="split long prefills into chunks of max_num_batched_tokens scheduled beside decodes; "
        "None: vLLM's default (on in its V1 engine)")
    speculative_config: SpeculativeConfig | None = Field(None, description="speculative decoding; None: off")
    cpu_offload_gb: float | None = Field(
        None, ge=0, le=65536, description="GiB of weights per GPU kept in CPU memory and streamed in each forward "
        "(a bigger model than fits, at PCIe cost); None: vLLM's default (0)")
    async_scheduling: bool | None = Field(
        None, description="schedule the next step while the GPU runs this one; None: vLLM's default")
    reasoning_parser: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_\-]{1,64}$",
        description="scenario serving only: the OpenAI server's --reasoning-parser (e.g. deepseek_r1, qwen3), which "
        "streams a reasoning model's reasoning apart from its answer on /v1/chat/completions; lem's load generator "
        "then sends the chat route, so the time to first answer token and reasoning vs answer tokens are measured "
        "(the name is checked against the image's vLLM before the server starts). None: the completions route, "
        "no separation")
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="more EngineArgs, passed through to vllm.LLM: each key must be a field of "
        "the runner's vLLM EngineArgs (checked in the runner before loading; an unknown one is a config error, exit "
        "2), and not one lem sets from a field of its own (set the field)")

    @field_validator("engine_args")
    @classmethod
    def _engine_args_own(cls, v: dict[str, Any]) -> dict[str, Any]:
        return checked_pass_through("vllm.engine_args", v, OWNED_VLLM)

    @model_validator(mode="after")
    def _batched_tokens_cover_a_sequence(self) -> VLLMConfig:
        if self.max_num_batched_tokens and self.max_model_len and self.max_num_batched_tokens < self.max_model_len:
            raise ValueError("max_num_batched_tokens must be >= max_model_len (vLLM refuses a smaller budget)")
        return self
