"""Forward-pass FLOPs, prefill and decode apart, with the attention term and the method stated.

Per request with L prompt tokens and O output tokens, N_body the non-embedding parameters, N_head the output
projection, n layers and d the attention width (heads x head_dim):
  prefill = 2 N_body L + 2 N_head + 2 n d L (L + 1)         (logits for the last prompt position only)
  decode  = sum over k = 1..O-1 of [2 (N_body + N_head) + 4 n d (L + k)]
A token at position p attends to p keys: QK^T and AV cost 2 d p each per layer. Padding and masked work are not
counted: these are the FLOPs the answer needs, not what a kernel happened to spend.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ParameterCounts:
    """Parameters of a decoder, split the way the FLOPs estimate needs them."""

    total: int
    input_embedding: int
    output_projection: int
    tied_embeddings: bool

    @property
    def non_embedding(self) -> int:
        """Parameters other than the token embeddings (the output projection is excluded only when tied)."""
        untied_head = 0 if self.tied_embeddings else self.output_projection
        return self.total - self.input_embedding - untied_head

    @property
    def compute(self) -> int:
        """Parameters that take part in each token's matrix multiplies: non-embedding plus the output projection."""
        return self.non_embedding + self.output_projection


@dataclass(frozen=True)
class ModelShape:
    """What the attention term needs: layers and attention width (query heads x head dim)."""

    n_layers: int
    attention_dim: int


METHOD = ("prefill 2*N_body*L + 2*N_head + 2*n_layers*d_attn*L*(L+1); decode per step 2*(N_body+N_head) + "
          "4*n_layers*d_attn*position; N_body = non-embedding parameters, N_head = output projection; per request "
          "from its own prompt and output lengths; padding not counted")
METHOD_NO_ATTENTION = METHOD.replace("; decode", " (attention term omitted: model shape unknown); decode")


def request_flops(counts: ParameterCounts, shape: ModelShape | None, n_in: int, n_out: int) -> tuple[float, float]:
    """(prefill, decode) FLOPs of one request."""
    body, head = counts.non_embedding, counts.output_projection
    attn = 0 if shape is None else shape.n_layers * shape.attention_dim
    prefill = 2.0 * body * n_in + 2.0 * head + 2.0 * attn * n_in * (n_in + 1)
    steps = max(0, n_out - 1)
    decode = steps * 2.0 * (body + head) + 4.0 * attn * (steps * n_in + steps * (steps + 1) / 2)
    return prefill, decode


def estimate_flops(counts: ParameterCounts, shape: ModelShape | None,
                   requests: Iterable[tuple[int, int]]) -> tuple[float, float]:
    """(prefill, decode) FLOPs summed over (input tokens, output tokens) per request."""
    pre = dec = 0.0
    for n_in, n_out in requests:
        p, d = request_flops(counts, shape, n_in, n_out)
        pre, dec = pre + p, dec + d
    return pre, dec
