"""The dry-run estimate's view of a GGUF file (``lem run --dry-run``): llama.cpp runs the file's tensors at their own
types, so the weights are what the file stores (its tensor data, from the GGUF header: nothing is loaded), and the
KV cache is 2 x layers x kv_heads x head_dim x n_ctx at the cache's element types (f16 unless ``type_k`` /
``type_v`` say otherwise; a quantized type's bytes per element from its block size). Read with the ``gguf``
package (the llamacpp extra's); None where it is missing or the file is not a readable GGUF."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from lem_runner.contract.backends import ModelFootprint


def _field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def cache_bytes_per_element(name: str | None) -> float:
    """Bytes per element of a ggml cache type (None: llama.cpp's default, f16)."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[(name or "f16").upper()]]
    return size / block


@functools.lru_cache(maxsize=8)
def gguf_sizes(path: str, mtime_ns: int) -> dict[str, int] | None:
    """The sizes the estimate needs from one GGUF header (read once per file version: parsing the header's
    metadata, tokenizer included, takes seconds)."""
    try:
        from gguf import GGUFReader

        reader = GGUFReader(path)
    except (ImportError, OSError, ValueError):
        return None
    arch = _field(reader, "general.architecture") or "llama"
    keys = {"layers": "block_count", "hidden": "embedding_length", "intermediate": "feed_forward_length",
            "heads": "attention.head_count", "kv_heads": "attention.head_count_kv", "head_dim": "attention.key_length",
            "trained_context": "context_length", "vocab": "vocab_size"}
    out = {ours: _field(reader, f"{arch}.{theirs}") for ours, theirs in keys.items()}
    if not out["vocab"] and "tokenizer.ggml.tokens" in reader.fields:
        out["vocab"] = len(reader.fields["tokenizer.ggml.tokens"].data)
    out["parameters"] = sum(int(t.n_elements) for t in reader.tensors)
    out["weight_bytes"] = sum(int(t.n_bytes) for t in reader.tensors)
    return out


def gguf_footprint(config: Any, model_file: Path) -> ModelFootprint | None:
    from lem_runner.backends.llamacpp.backend import context_length

    try:
        size = gguf_sizes(str(model_file), model_file.stat().st_mtime_ns)
    except OSError:
        return None
    if size is None or not all(isinstance(size[k], int) and size[k] > 0 for k in ("layers", "hidden", "heads")):
        return None
    kv_heads = size["kv_heads"] or size["heads"]
    head_dim = size["head_dim"] or size["hidden"] // size["heads"]
    n_ctx = context_length(config)
    s = config.llamacpp
    per_token = size["layers"] * kv_heads * head_dim * (cache_bytes_per_element(s.type_k)
                                                        + cache_bytes_per_element(s.type_v))
    trained = size["trained_context"]
    notes = ((f"llamacpp n_ctx {n_ctx} exceeds the GGUF's trained context_length {trained}: llama.cpp runs it, "
              "but past the trained length answers degrade",) if isinstance(trained, int) and n_ctx > trained else ())
    return ModelFootprint(
        source=f"GGUF header of {model_file.name} (tensor types as stored)", parameters=size["parameters"],
        weight_bytes=size["weight_bytes"], kv_bytes=int(per_token * n_ctx), context_tokens=n_ctx,
        hidden=size["hidden"], intermediate=size["intermediate"] or 4 * size["hidden"], vocab=size["vocab"] or 0,
        notes=notes)
