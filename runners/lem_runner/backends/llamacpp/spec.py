"""The llamacpp backend's spec: llama.cpp (llama-cpp-python) on a GGUF file as it is, one prompt at a time."""

from __future__ import annotations

from typing import Any

from lem_runner.backends.llamacpp.config import LlamaCppConfig
from lem_runner.contract.backends import BackendSpec, ImageSpec


def _context_fits(cfg: Any, section: LlamaCppConfig) -> None:
    budget = cfg.max_input_tokens + cfg.max_output_tokens
    if section.n_ctx is not None and budget > section.n_ctx:
        raise ValueError(f"llamacpp.n_ctx {section.n_ctx} is shorter than max_input_tokens + max_output_tokens = "
                         f"{budget}")


def _gguf_as_is(cfg: Any, section: LlamaCppConfig) -> None:
    if cfg.dtype != "auto":
        raise ValueError(f"dtype: the llamacpp backend runs the GGUF's own tensor types; '{cfg.dtype}' cannot be "
                         "applied (use dtype: auto, or a GGUF file of the type wanted)")
    if cfg.synthetic_weights:
        raise ValueError("synthetic_weights: the llamacpp backend loads a GGUF file's weights; it cannot build "
                         "random ones")


def _device_matches_offload(cfg: Any, section: LlamaCppConfig) -> None:
    if cfg.device == "cuda" and section.n_gpu_layers == 0:
        raise ValueError("llamacpp.n_gpu_layers: device 'cuda' needs layers offloaded to the GPU (-1: all); with 0 "
                         "the model runs on the CPU")
    if cfg.device == "cpu" and section.n_gpu_layers != 0:
        raise ValueError(f"llamacpp.n_gpu_layers: {section.n_gpu_layers} layers offloaded, but device is 'cpu' "
                         "(set 0, or device: cuda)")


def _device_kind(cfg: Any) -> str:
    """llama.cpp computes where its layers are: on the CPU with none offloaded, whatever GPU the host has."""
    return "cpu" if cfg.llamacpp.n_gpu_layers == 0 else "cuda"


def _engine_fields(cfg: Any) -> tuple[str, ...]:
    """Left unset, the context is sized from the run's lengths, so they define the engine too."""
    return ("max_input_tokens", "max_output_tokens") if cfg.llamacpp.n_ctx is None else ()


SPEC = BackendSpec(
    name="llamacpp",
    order=30,
    config=LlamaCppConfig,
    implementation="lem_runner.backends.llamacpp.backend:LlamaCppBackend",
    summary="llama.cpp (llama-cpp-python) on a GGUF file, one prompt at a time",
    model_format="gguf",
    image=ImageSpec(extras={"cpu": "llamacpp"}, library="llama-cpp-python",
                    pinned=("pydantic", "pydantic-core", "pyarrow", "numpy", "gguf", "llama-cpp-python"),
                    # the source build `make llamacpp-wheel` leaves in $LEM_WHEEL_DIR (CPU, no host-specific code)
                    local_wheels=("llama_cpp_python-*.whl",),
                    cpu_buildargs={"LEM_APT_PACKAGES": "libgomp1"}),
    host_modules=("llama_cpp",),
    libraries=("llama-cpp-python", "numpy", "gguf", "pydantic", "nvidia-ml-py"),
    batch_field=None,
    batch_meaning="one prompt at a time: llama-cpp-python's Llama decodes one sequence",
    batch_refusal="the llamacpp backend has no batch knob: llama-cpp-python's Llama decodes one sequence at a time, "
                  "so prompts run one after another",
    engine_section_fields=tuple(LlamaCppConfig.model_fields),  # every field is a Llama argument
    checks=(_context_fits, _gguf_as_is, _device_matches_offload),
    engine_fields_of=_engine_fields,
    device_kind_of=_device_kind,
    engine_check="lem_runner.backends.llamacpp.check:llamacpp_problems",
    footprint="lem_runner.backends.llamacpp.footprint:gguf_footprint",
    server_command="lem_runner.backends.llamacpp.server:llamacpp_command",
    short_names={"n_gpu_layers": "ngl", "n_threads": "threads", "n_batch": "nb", "flash_attn": "fa"},
    # the quality hooks score on a second llama.cpp context after the window (backends/llamacpp/logprobs.py)
    scores_continuations=True,
    gives_next_token_logprobs=True,
    gives_rolling_loglikelihood=True,
)
