"""The pytorch section's engine settings turned into transformers arguments, and read back from the loaded model.

``from_pretrained``: dtype, attn_implementation, quantization (a ``BitsAndBytesConfig`` / ``TorchAoConfig``),
device_map (accelerate places the model; a quantized model is loaded straight onto its device the same way, since
such a model cannot be moved with ``.to``) and ``model_kwargs``. ``generate``: lem's own fields, the decoding
knobs, ``cache_implementation``, ``disable_compile=True`` (lem compiles only when ``torch_compile`` says so, never
through transformers' auto-compile), and ``generate_kwargs``. ``torch_compile`` wraps the model's forward in
``torch.compile``. What the engine used goes into the result's ``engine_settings``: the arguments as passed, and
read back from the model: its device map, quantization config, dtype, the KV-cache class the first ``generate``
built (seen by a one-shot forward pre-hook) and, when compiling, the graphs dynamo compiled.
"""

from __future__ import annotations

from typing import Any

from lem_runner.contract.engine_args import jsonable


def quantization_config(method: str, dtype: str):
    """The transformers quantization config for a ``pytorch.quantization`` method (imports its library)."""
    import torch
    from transformers import BitsAndBytesConfig, TorchAoConfig

    if method == "bitsandbytes-int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    if method == "bitsandbytes-nf4":
        compute = getattr(torch, dtype) if dtype in ("float16", "bfloat16", "float32") else torch.bfloat16
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)
    import torchao.quantization as ao

    cls = {"torchao-int8-weight-only": "Int8WeightOnlyConfig", "torchao-int4-weight-only": "Int4WeightOnlyConfig",
           "torchao-int8-dynamic": "Int8DynamicActivationInt8WeightConfig",
           "torchao-float8-weight-only": "Float8WeightOnlyConfig"}[method]
    return TorchAoConfig(quant_type=getattr(ao, cls)())


def load_kwargs(config: Any, dtype: str, device: str) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for the section (``device_map`` set means: do not call ``.to``)."""
    p = config.pytorch
    kwargs: dict[str, Any] = {"dtype": dtype}
    if p.attn_implementation:
        kwargs["attn_implementation"] = p.attn_implementation
    if p.quantization:
        kwargs["quantization_config"] = quantization_config(p.quantization, dtype)
    if p.device_map:
        kwargs["device_map"] = p.device_map
    elif p.quantization:
        kwargs["device_map"] = {"": device}
    kwargs.update(p.model_kwargs)
    return kwargs


def generate_kwargs(config: Any, pad_token_id: int | None) -> dict[str, Any]:
    """``generate`` keyword arguments. Sampling knobs (temperature, top_p, top_k, min_p) only when sampling, as
    greedy ignores them; repetition_penalty whenever it is not 1 (it reshapes the logits greedy takes the max of)."""
    d = config.decoding
    p = config.pytorch
    kw: dict[str, Any] = {
        "max_new_tokens": config.max_output_tokens,
        "do_sample": d.do_sample,
        "pad_token_id": pad_token_id,
        "use_cache": p.use_cache,
        "disable_compile": True,
    }
    if d.do_sample:
        kw.update(temperature=d.temperature, top_p=d.top_p, top_k=d.top_k)
        if d.min_p:
            kw["min_p"] = d.min_p
    kw.update(d.penalties())  # presence/frequency are refused for pytorch before this (transformers has neither)
    if config.force_output_length:
        kw["min_new_tokens"] = config.max_output_tokens
    if p.cache_implementation:
        kw["cache_implementation"] = p.cache_implementation
    kw.update(p.generate_kwargs)
    return kw


def compile_forward(model, mode: str) -> None:
    """``model.forward`` compiled with ``torch.compile(mode=...)``; compilation happens in the first calls."""
    import torch

    model.forward = torch.compile(model.forward, mode=mode)


def compiled_graphs() -> int:
    """Graphs torch dynamo has compiled in this process so far (0: nothing was compiled)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def watch_cache_class(model, settings: dict[str, Any]) -> None:
    """Record in ``settings["kv_cache_class"]`` the class of the KV cache the first forward receives (what
    ``cache_implementation`` resolved to), then remove the hook: no cost after the first step."""
    handle = None

    def hook(_module, _args, kwargs):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        settings["kv_cache_class"] = type(cache).__name__ if cache is not None else None
        handle.remove()

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)


def read_back(model, load_args: dict[str, Any], gen_args: dict[str, Any], config: Any) -> dict[str, Any]:
    """What the engine uses, for the result: the arguments as passed and what the loaded model says."""
    quant = getattr(model.config, "quantization_config", None)
    gen = model.generation_config
    return {
        "from_pretrained": jsonable({k: v for k, v in load_args.items()}),
        "generate": jsonable({k: v for k, v in gen_args.items()}),
        "torch_compile": config.pytorch.compile_mode or False,
        "hf_device_map": jsonable(getattr(model, "hf_device_map", None)),
        "quantization_config": jsonable(quant),
        "model_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "model_generation_config": jsonable(gen.to_diff_dict()) if hasattr(gen, "to_diff_dict") else None,
        "kv_cache_class": None,  # filled in by the first generate (watch_cache_class)
    }
