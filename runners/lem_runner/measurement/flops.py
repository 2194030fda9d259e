"""Forward-pass FLOPs, prefill and decode apart, with the attention term and the method stated.

Per request with L prompt tokens and O output tokens, N_body the non-embedding parameters, N_head the output
projection, n layers and d the attention width (heads x head_dim):
  prefill = 2 N_body L + 2 N_head + 2 n d L (L + 1)         (logits for the last prompt position only)
  decode  = sum over k = 1..O-1 of [2 (N_body + N_head) + 4 n d (L + k)]
A token at position p attends to p keys: QK^T and AV cost 2 d p each per layer. Padding and masked work are not
counted: these are the FLOPs the answer needs, not what a kernel happened to spend.

Mixture-of-experts: each token runs through only k of the E routed experts of a layer, so N_body counts ACTIVE
parameters: the routed expert weights scaled by k / E, everything else (attention, router, shared experts, norms) in
full. Counting every expert would overstate a Mixtral-8x7B's FLOPs about 3.6-fold.
"""

from __future__ import annotations

from collections.abc import Iterable

from lem_runner.records import ModelShape, ParameterCounts

METHOD = ("prefill 2*N_body*L + 2*N_head + 2*n_layers*d_attn*L*(L+1); decode per step 2*(N_body+N_head) + "
          "4*n_layers*d_attn*position; N_body = non-embedding parameters, N_head = output projection; per request "
          "from its own prompt and output lengths; padding not counted")
METHOD_NO_ATTENTION = METHOD.replace("; decode", " (attention term omitted: model shape unknown); decode")
MOE_METHOD = ("; mixture of experts ({e} routed experts, {k} per token): N_body counts active parameters, the routed "
              "expert weights ({routed:.4g}) times {k}/{e}, attention, router and any shared experts in full")
MOE_NOT_FOUND = ("; WARNING: the config routes tokens to {k} of {e} experts but no expert weights were found by name "
                 "('.experts.'): every parameter counted, an over-estimate")


def flops_method(counts: ParameterCounts, shape: ModelShape | None) -> str:
    """The method in words, with the mixture-of-experts scaling when it applies, or a warning when the config routes
    to experts whose weights could not be told apart."""
    method = METHOD if shape is not None else METHOD_NO_ATTENTION
    if counts.is_moe:
        return method + MOE_METHOD.format(e=counts.n_experts, k=counts.experts_per_token, routed=counts.routed_expert)
    if counts.n_experts and counts.experts_per_token:
        return method + MOE_NOT_FOUND.format(e=counts.n_experts, k=counts.experts_per_token)
    return method


def request_flops(counts: ParameterCounts, shape: ModelShape | None, n_in: int, n_out: int) -> tuple[float, float]:
    """(prefill, decode) FLOPs of one request."""
    body, head = counts.active_non_embedding, counts.output_projection
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
