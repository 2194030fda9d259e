"""Parameter counts for the FLOPs estimate when the model itself is out of reach (an engine keeps it in another
process): from the tensor shapes in a safetensors checkpoint, or from a Llama-like config."""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from pathlib import Path

from lem_runner.records import ModelShape, ParameterCounts

_EMBEDDING_SUFFIXES = ("embed_tokens.weight", "wte.weight", "embed_in.weight", "word_embeddings.weight",
                       "tok_embeddings.weight")
_HEAD_SUFFIXES = ("lm_head.weight", "embed_out.weight")
#: config keys for the routed experts per MoE layer (Mixtral / Qwen-MoE / DeepSeek) and for experts per token
_N_EXPERTS_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
_TOP_K_KEYS = ("num_experts_per_tok", "moe_topk")


def is_routed_expert(name: str) -> bool:
    """A routed expert's weight, by name: ``...mlp.experts.gate_up_proj`` (fused), ``...block_sparse_moe.experts.3.w1
    .weight`` (per expert). Shared experts (``shared_expert(s)``) and the router (``gate``) do not match."""
    return ".experts." in name or name.startswith("experts.")


def moe_routing(hf_config) -> tuple[int, int] | None:
    """(routed experts per layer, experts per token) from an HF config, or None for a dense model."""
    get_text = getattr(hf_config, "get_text_config", None)
    c = get_text() if callable(get_text) else hf_config
    n = next((v for key in _N_EXPERTS_KEYS if isinstance(v := getattr(c, key, None), int) and v > 1), None)
    k = next((v for key in _TOP_K_KEYS if isinstance(v := getattr(c, key, None), int) and v > 0), None)
    return (n, k) if n is not None and k is not None and k <= n else None


def with_moe(counts: ParameterCounts, hf_config, routed_expert: int) -> ParameterCounts:
    """``counts`` with the mixture-of-experts routing from the config and the routed-expert parameter count."""
    routing = moe_routing(hf_config)
    if routing is None:
        return counts
    return dataclasses.replace(counts, routed_expert=routed_expert, n_experts=routing[0], experts_per_token=routing[1])


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor shapes from a safetensors file's header (8-byte little-endian length, then JSON); no weights read."""
    with path.open("rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    return {name: meta["shape"] for name, meta in header.items() if name != "__metadata__"}


def checkpoint_parameter_counts(model_dir: Path, tie_word_embeddings: bool) -> ParameterCounts | None:
    """Parameter counts from the shapes in a safetensors checkpoint (single file or sharded with an index), or None
    when the folder has no safetensors checkpoint or its embedding tensors cannot be told apart by name.

    A tied checkpoint usually stores no output projection; one that does is not counted twice, as in the model."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    elif (model_dir / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        return None
    shapes: dict[str, list[int]] = {}
    for name in files:
        shapes.update(_safetensors_shapes(model_dir / name))
    embeds = [n for n in shapes if n.endswith(_EMBEDDING_SUFFIXES)]
    heads = [n for n in shapes if n.endswith(_HEAD_SUFFIXES)]
    if len(embeds) != 1 or len(heads) > 1 or (not heads and not tie_word_embeddings):
        return None
    embed = math.prod(shapes[embeds[0]])
    tied = tie_word_embeddings or not heads
    total = sum(math.prod(s) for n, s in shapes.items() if not (tied and n in heads))
    head = embed if tied else math.prod(shapes[heads[0]])
    routed = sum(math.prod(s) for n, s in shapes.items() if is_routed_expert(n))
    return ParameterCounts(total=total, input_embedding=embed, output_projection=head, tied_embeddings=tied,
                           routed_expert=routed)


def llama_like_parameter_counts(hf_config) -> ParameterCounts:
    """Parameter counts of a Llama-like decoder from its HF config (any object with those attributes).

    embedding V*H; per layer: q and o H*(n_heads*head_dim) each, k and v H*(n_kv*head_dim) each (+ biases with
    ``attention_bias``), MLP gate/up/down 3*H*I (+ biases with ``mlp_bias``), two RMSNorm weights 2*H; a final norm
    H; the output projection V*H, shared with the embedding when ``tie_word_embeddings``. A Mixtral-like MoE (E
    routed experts, every layer): the MLP is E experts of 3*H*I (I = ``moe_intermediate_size`` if given) and a
    router H*E. Not valid for shared experts, dense-first layers or architectures with other blocks."""
    c = hf_config
    v, h, inter, layers = c.vocab_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers
    heads = c.num_attention_heads
    kv = getattr(c, "num_key_value_heads", None) or heads
    head_dim = getattr(c, "head_dim", None) or h // heads
    q, k = heads * head_dim, kv * head_dim
    attention = 2 * h * q + 2 * h * k + ((q + 2 * k + h) if getattr(c, "attention_bias", False) else 0)
    mlp = 3 * h * inter + ((2 * inter + h) if getattr(c, "mlp_bias", False) else 0)
    routing = moe_routing(c)
    experts = 0
    if routing is not None:
        expert_inter = getattr(c, "moe_intermediate_size", None) or inter
        experts = routing[0] * 3 * h * expert_inter
        mlp = experts + h * routing[0]
    per_layer = attention + mlp + 2 * h
    tied = bool(getattr(c, "tie_word_embeddings", False))
    embed = v * h
    total = embed + layers * per_layer + h + (0 if tied else embed)
    counts = ParameterCounts(total=total, input_embedding=embed, output_projection=embed, tied_embeddings=tied)
    return with_moe(counts, c, layers * experts)


def checkpoint_dtype(model_dir: Path) -> str | None:
    """The dtype a transformers checkpoint was saved in (config.json's ``dtype`` or older ``torch_dtype``)."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    dtype = config.get("dtype") or config.get("torch_dtype")
    return dtype if dtype in ("float32", "float16", "bfloat16") else None


def parameter_counts(model_dir: Path, hf_config) -> tuple[ParameterCounts, str]:
    """Counts from the checkpoint's safetensors headers, or, for a pre-quantized checkpoint (packed shapes) or one
    without safetensors, from the Llama-like formula over the HF config; with the name of the source used."""
    get_text = getattr(hf_config, "get_text_config", None)
    text = get_text() if callable(get_text) else hf_config
    quantized = (getattr(hf_config, "quantization_config", None) is not None
                 or (model_dir / "hf_quant_config.json").is_file())
    if not quantized and model_dir.is_dir():
        counts = checkpoint_parameter_counts(model_dir, bool(getattr(text, "tie_word_embeddings", False)))
        if counts is not None:
            return with_moe(counts, text, counts.routed_expert), "checkpoint safetensors headers"
    formula = "Mixtral-like MoE" if moe_routing(text) is not None else "Llama-like dense"
    return llama_like_parameter_counts(text), f"HF config, {formula} formula"


def model_shape(hf_config) -> ModelShape | None:
    """Layers and attention width (query heads x head dim) from an HF config, or None when it does not say."""
    get_text = getattr(hf_config, "get_text_config", None)
    c = get_text() if callable(get_text) else hf_config
    layers, heads, hidden = (getattr(c, k, None) for k in ("num_hidden_layers", "num_attention_heads", "hidden_size"))
    if not isinstance(layers, int) or not isinstance(heads, int):
        return None
    head_dim = getattr(c, "head_dim", None) or (hidden // heads if isinstance(hidden, int) else None)
    return ModelShape(n_layers=layers, attention_dim=heads * head_dim) if head_dim else None
