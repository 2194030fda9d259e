"""What a checkpoint folder says about its model without loading it: its config.json, the tensor shapes in its
safetensors headers, and the parameter count of a Llama-like decoder from its config. Pure file reading and
arithmetic, here because both sides need it: the runner for the FLOPs estimate, the controller for the memory
estimate of ``lem run --dry-run`` (which may import only the contract)."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: config keys for the routed experts per MoE layer (Mixtral / Qwen-MoE / DeepSeek) and for experts per token
N_EXPERTS_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
TOP_K_KEYS = ("num_experts_per_tok", "moe_topk")


def read_hf_config(model_dir: Path) -> dict[str, Any] | None:
    """The folder's config.json as a mapping, or None when it is missing or not a JSON object."""
    try:
        data = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor shapes from a safetensors file's header (8-byte little-endian length, then JSON); no weights read."""
    with Path(path).open("rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    return {name: meta["shape"] for name, meta in header.items() if name != "__metadata__"}


def checkpoint_shapes(model_dir: Path) -> dict[str, list[int]] | None:
    """Every tensor's shape in the folder's safetensors checkpoint (one file, or shards listed by an index), or
    None when it has none."""
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    elif (model_dir / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        return None
    shapes: dict[str, list[int]] = {}
    for name in files:
        shapes.update(safetensors_shapes(model_dir / name))
    return shapes


def moe_routing(hf_config) -> tuple[int, int] | None:
    """(routed experts per layer, experts per token) from an HF config (attributes), or None for a dense model."""
    get_text = getattr(hf_config, "get_text_config", None)
    c = get_text() if callable(get_text) else hf_config
    n = next((v for key in N_EXPERTS_KEYS if isinstance(v := getattr(c, key, None), int) and v > 1), None)
    k = next((v for key in TOP_K_KEYS if isinstance(v := getattr(c, key, None), int) and v > 0), None)
    return (n, k) if n is not None and k is not None and k <= n else None


@dataclass(frozen=True)
class LlamaLikeSize:
    """Parameter counts of a Llama-like decoder: all of them, the input embedding, the routed experts' (MoE)."""

    total: int
    input_embedding: int
    routed_expert: int
    tied_embeddings: bool


def llama_like_size(c) -> LlamaLikeSize:
    """Parameter counts of a Llama-like decoder from its HF config (any object with those attributes).

    embedding V*H; per layer: q and o H*(n_heads*head_dim) each, k and v H*(n_kv*head_dim) each (+ biases with
    ``attention_bias``), MLP gate/up/down 3*H*I (+ biases with ``mlp_bias``), two RMSNorm weights 2*H; a final norm
    H; the output projection V*H, shared with the embedding when ``tie_word_embeddings``. A Mixtral-like MoE (E
    routed experts, every layer): the MLP is E experts of 3*H*I (I = ``moe_intermediate_size`` if given) and a
    router H*E. Not valid for shared experts, dense-first layers or architectures with other blocks."""
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
    return LlamaLikeSize(total=total, input_embedding=embed, routed_expert=layers * experts, tied_embeddings=tied)


def stored_parameters(shapes: dict[str, list[int]]) -> int:
    """Elements of every tensor a checkpoint stores (what loading it puts in memory, before any tying)."""
    return sum(math.prod(shape) for shape in shapes.values())
