"""Parameter counts for the FLOPs estimate when the model itself is out of reach (an engine keeps it in another
process): from the tensor shapes in a safetensors checkpoint, or from a Llama-like config."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from lem_runner.contract.checkpoint import checkpoint_shapes, llama_like_size, moe_routing
from lem_runner.records import ModelShape, ParameterCounts

_EMBEDDING_SUFFIXES = ("embed_tokens.weight", "wte.weight", "embed_in.weight", "word_embeddings.weight",
                       "tok_embeddings.weight")
_HEAD_SUFFIXES = ("lm_head.weight", "embed_out.weight")


def is_routed_expert(name: str) -> bool:
    """A routed expert's weight, by name: ``...mlp.experts.gate_up_proj`` (fused), ``...block_sparse_moe.experts.3.w1
    .weight`` (per expert). Shared experts (``shared_expert(s)``) and the router (``gate``) do not match."""
    return ".experts." in name or name.startswith("experts.")


def with_moe(counts: ParameterCounts, hf_config, routed_expert: int) -> ParameterCounts:
    """``counts`` with the mixture-of-experts routing from the config and the routed-expert parameter count."""
    routing = moe_routing(hf_config)
    if routing is None:
        return counts
    return dataclasses.replace(counts, routed_expert=routed_expert, n_experts=routing[0], experts_per_token=routing[1])


def checkpoint_parameter_counts(model_dir: Path, tie_word_embeddings: bool) -> ParameterCounts | None:
    """Parameter counts from the shapes in a safetensors checkpoint (single file or sharded with an index), or None
    when the folder has no safetensors checkpoint or its embedding tensors cannot be told apart by name.

    A tied checkpoint usually stores no output projection; one that does is not counted twice, as in the model."""
    shapes = checkpoint_shapes(model_dir)
    if shapes is None:
        return None
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
    """Parameter counts of a Llama-like decoder from its HF config (the formula: contract.checkpoint.llama_like_size).

    embedding V*H; per layer: q and o H*(n_heads*head_dim) each, k and v H*(n_kv*head_dim) each (+ biases with
    ``attention_bias``), MLP gate/up/down 3*H*I (+ biases with ``mlp_bias``), two RMSNorm weights 2*H; a final norm
    H; the output projection V*H, shared with the embedding when ``tie_word_embeddings``. A Mixtral-like MoE (E
    routed experts, every layer): the MLP is E experts of 3*H*I (I = ``moe_intermediate_size`` if given) and a
    router H*E. Not valid for shared experts, dense-first layers or architectures with other blocks."""
    size = llama_like_size(hf_config)
    counts = ParameterCounts(total=size.total, input_embedding=size.input_embedding,
                             output_projection=size.input_embedding, tied_embeddings=size.tied_embeddings)
    return with_moe(counts, hf_config, size.routed_expert)


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
