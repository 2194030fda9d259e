"""The ``pytorch:`` section: transformers ``from_pretrained`` / ``generate`` settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from lem_runner.contract.engine_args import checked_pass_through
from lem_runner.contract.section import Section

#: ``generate`` arguments lem sets from its own fields (or itself) -> that field
OWNED_GENERATE = {
    "max_new_tokens": "max_output_tokens", "max_length": "max_output_tokens",
    "min_new_tokens": "force_output_length", "min_length": "force_output_length",
    "do_sample": "decoding.do_sample", "temperature": "decoding.temperature", "top_p": "decoding.top_p",
    "top_k": "decoding.top_k", "min_p": "decoding.min_p", "repetition_penalty": "decoding.repetition_penalty",
    "use_cache": "pytorch.use_cache", "cache_implementation": "pytorch.cache_implementation",
    "compile_config": "pytorch.torch_compile", "disable_compile": "pytorch.torch_compile",
    "pad_token_id": "(lem: the tokenizer's pad token)",
    "eos_token_id": "(lem: the model's end-of-sequence tokens, which output tokens are counted to)",
    "num_return_sequences": "(lem: one sequence per prompt, which every figure counts)",
    "return_dict_in_generate": "(lem: reads the generated token ids)",
}

#: ``from_pretrained`` arguments lem sets from its own fields -> that field
OWNED_MODEL = {
    "dtype": "dtype", "torch_dtype": "dtype", "attn_implementation": "pytorch.attn_implementation",
    "device_map": "pytorch.device_map", "max_memory": "pytorch.device_map",
    "quantization_config": "pytorch.quantization", "revision": "model", "cache_dir": "model", "token": "model",
    "local_files_only": "allow_model_download", "force_download": "model", "proxies": "allow_model_download",
    "subfolder": "model", "gguf_file": "model", "config": "model", "state_dict": "model",
}

#: ``pytorch.quantization`` -> (the library it needs, how transformers is told)
QUANTIZATION_METHODS = {
    "bitsandbytes-int8": ("bitsandbytes", "BitsAndBytesConfig(load_in_8bit=True)"),
    "bitsandbytes-nf4": ("bitsandbytes", "BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4', "
                                         "bnb_4bit_compute_dtype=the run's dtype)"),
    "torchao-int8-weight-only": ("torchao", "TorchAoConfig(Int8WeightOnlyConfig())"),
    "torchao-int4-weight-only": ("torchao", "TorchAoConfig(Int4WeightOnlyConfig())"),
    "torchao-int8-dynamic": ("torchao", "TorchAoConfig(Int8DynamicActivationInt8WeightConfig())"),
    "torchao-float8-weight-only": ("torchao", "TorchAoConfig(Float8WeightOnlyConfig())"),
}
Quantization = Literal["bitsandbytes-int8", "bitsandbytes-nf4", "torchao-int8-weight-only",
                       "torchao-int4-weight-only", "torchao-int8-dynamic", "torchao-float8-weight-only"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


class PyTorchConfig(Section):
    """transformers ``generate`` on PyTorch. Fields map onto ``from_pretrained`` / ``generate`` arguments."""

    batch_size: int = Field(1, ge=1, le=4096)
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = None
    use_cache: bool = True
    torch_compile: bool | CompileMode = Field(
        False, description="torch.compile the model's forward (true: mode 'default', or name a mode); false: never "
        "compiled, also not by transformers' own auto-compile of a static cache (generate(disable_compile=True)). "
        "Compilation happens in the first calls, i.e. in warmup: give warmup enough batches")
    cache_implementation: Literal["dynamic", "static", "offloaded", "offloaded_static", "quantized"] | None = Field(
        None, description="KV cache class generate() builds (GenerationConfig.cache_implementation); None: "
        "transformers' default (dynamic). 'static' preallocates max length, the shape torch.compile wants")
    quantization: Quantization | None = Field(
        None, description="weight quantization at load (from_pretrained(quantization_config=...)): bitsandbytes-* "
        "need the bitsandbytes package (and, for most of its kernels, a CUDA GPU), torchao-* the torchao package; "
        "refused before loading where the runner's environment lacks it")
    device_map: Literal["auto", "balanced", "balanced_low_0", "sequential"] | None = Field(
        None, description="place the model over every GPU in devices with accelerate (from_pretrained(device_map)); "
        "None: the whole model on one device (devices lists exactly one)")
    generate_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="more generate() arguments, passed through: each key must be a "
        "GenerationConfig attribute of the runner's transformers (checked before loading), and not one lem sets "
        "from a field of its own (max_new_tokens, do_sample, temperature, ...: set the field)")
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="more from_pretrained() arguments, passed through: loading arguments or "
        "model config attributes of the runner's transformers (checked before loading), not ones lem sets "
        "(dtype, attn_implementation, device_map, quantization_config, ...)")

    @field_validator("generate_kwargs")
    @classmethod
    def _generate_kwargs_own(cls, v: dict[str, Any]) -> dict[str, Any]:
        return checked_pass_through("pytorch.generate_kwargs", v, OWNED_GENERATE)

    @field_validator("model_kwargs")
    @classmethod
    def _model_kwargs_own(cls, v: dict[str, Any]) -> dict[str, Any]:
        return checked_pass_through("pytorch.model_kwargs", v, OWNED_MODEL)

    @property
    def compile_mode(self) -> str | None:
        """The torch.compile mode, or None when not compiling."""
        if self.torch_compile is False:
            return None
        return "default" if self.torch_compile is True else self.torch_compile
