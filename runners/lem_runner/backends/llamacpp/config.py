"""The ``llamacpp:`` section: ``llama_cpp.Llama`` arguments (llama-cpp-python's binding of llama.cpp)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lem_runner.contract.engine_args import checked_pass_through
from lem_runner.contract.section import Section

#: ``llama_cpp.Llama`` arguments lem sets from its own fields (or itself) -> that field
OWNED_LLAMA = {
    "model_path": "model", "seed": "seed", "n_ctx": "llamacpp.n_ctx", "n_batch": "llamacpp.n_batch",
    "n_ubatch": "llamacpp.n_ubatch", "n_threads": "llamacpp.n_threads",
    "n_threads_batch": "llamacpp.n_threads_batch", "n_gpu_layers": "llamacpp.n_gpu_layers",
    "main_gpu": "devices", "flash_attn": "llamacpp.flash_attn", "type_k": "llamacpp.type_k",
    "type_v": "llamacpp.type_v", "offload_kqv": "llamacpp.offload_kqv", "use_mmap": "llamacpp.use_mmap",
    "use_mlock": "llamacpp.use_mlock",
    "verbose": "(lem: the engine's log goes to the runner's stderr only when asked)",
    "logits_all": "(lem: only the last position's logits are needed to sample; the quality hooks score on a "
                  "second context after the window)",
    "embedding": "(lem: generation, not embeddings)", "vocab_only": "(lem: the model's weights are loaded)",
    "chat_format": "(lem: prompts are completed as raw text)", "chat_handler": "(lem: raw completion)",
    "draft_model": "(lem: not JSON)", "tokenizer": "(lem: the GGUF's own tokenizer counts tokens)",
}

#: KV-cache element types llama.cpp takes for ``type_k`` / ``type_v`` (ggml type names)
CacheType = Literal["f32", "f16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
#: the quantized ones (llama.cpp runs a quantized V cache only in its flash-attention kernel)
QUANTIZED_CACHE = ("q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


class LlamaCppConfig(Section):
    """llama.cpp through llama-cpp-python (``llama_cpp.Llama``) on a GGUF file, run as it is (its own tensor types:
    the experiment's ``dtype`` stays 'auto'). Fields map onto ``Llama``'s own arguments; sampling comes from the
    experiment's ``decoding``, ``max_output_tokens`` and ``force_output_length``."""

    n_ctx: int | None = Field(
        None, ge=16, le=1_048_576, description="context (KV cache) length in tokens; None: max_input_tokens + "
        "max_output_tokens, the most one request needs (llama.cpp allocates the whole KV cache at load)")
    n_batch: int = Field(512, ge=1, le=1_048_576, description="prompt tokens handed to one llama_decode call "
                         "(llama.cpp's logical batch; prefill of a longer prompt takes several)")
    n_ubatch: int | None = Field(None, ge=1, le=1_048_576,
                                 description="physical batch the compute graph runs at once; None: llama-cpp-python's "
                                 "default (512)")
    n_threads: int | None = Field(None, ge=1, le=4096, description="CPU threads for decoding; None: llama-cpp-"
                                  "python's default (half the CPUs)")
    n_threads_batch: int | None = Field(None, ge=1, le=4096, description="CPU threads for prompt processing; None: "
                                        "llama-cpp-python's default (every CPU)")
    n_gpu_layers: int = Field(0, ge=-1, le=100_000, description="layers offloaded to the GPU (-1: all); 0: the "
                              "model runs on the CPU. More than 0 needs a llama.cpp built with GPU support")
    flash_attn: bool = Field(False, description="llama.cpp's fused (flash) attention kernel")
    type_k: CacheType | None = Field(None, description="KV cache element type for keys; None: llama.cpp's (f16)")
    type_v: CacheType | None = Field(None, description="KV cache element type for values; None: llama.cpp's (f16); "
                                     "a quantized V cache needs flash_attn")
    offload_kqv: bool = Field(True, description="keep the KV cache and attention on the GPU with offloaded layers")
    use_mmap: bool = Field(True, description="map the GGUF file instead of reading it into memory")
    use_mlock: bool = Field(False, description="lock the model's memory (no paging out)")
    llama_args: dict[str, Any] = Field(
        default_factory=dict, description="more llama_cpp.Llama arguments, passed through: each key must be a named "
        "parameter of the runner's Llama.__init__ (checked before loading), not one lem sets from a field of its own "
        "(set the field)")

    @field_validator("llama_args")
    @classmethod
    def _llama_args_own(cls, v: dict[str, Any]) -> dict[str, Any]:
        return checked_pass_through("llamacpp.llama_args", v, OWNED_LLAMA)

    @model_validator(mode="after")
    def _quantized_v_needs_flash(self) -> LlamaCppConfig:
        if self.type_v in QUANTIZED_CACHE and not self.flash_attn:
            raise ValueError(f"type_v '{self.type_v}': llama.cpp runs a quantized V cache only with flash_attn: true")
        return self
