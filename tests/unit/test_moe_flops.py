"""FLOPs of a mixture-of-experts model count the parameters each token actually uses (k of E routed experts), checked
against a hand computation of a tiny Mixtral's shapes (8 experts, 2 per token)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from lem_runner.backends.checkpoint import llama_like_parameter_counts, model_shape
from lem_runner.measurement.flops import estimate_flops, flops_method
from lem_runner.records import ModelShape, ParameterCounts
from tiny_model import TINY_MIXTRAL, hand_active_body, hand_request_flops

V = 512


def test_moe_flops_count_active_experts_from_the_config_formula():
    config = SimpleNamespace(vocab_size=V, tie_word_embeddings=False, **TINY_MIXTRAL)  # MixtralConfig's attributes
    counts = llama_like_parameter_counts(config)
    active, every, _ = hand_active_body(TINY_MIXTRAL)
    assert (counts.non_embedding, counts.active_non_embedding) == (every, active)
    pre, dec = estimate_flops(counts, model_shape(config), [(16, 4)])
    assert pre + dec == pytest.approx(hand_request_flops(TINY_MIXTRAL, 16, 4))


def test_moe_flops_method_says_active_parameters_and_dense_method_does_not():
    moe = ParameterCounts(total=10_000, input_embedding=1000, output_projection=1000, tied_embeddings=False,
                          routed_expert=6000, n_experts=8, experts_per_token=2)
    assert moe.active_non_embedding == 8000 - 6000 + 1500
    method = flops_method(moe, ModelShape(2, 64))
    assert "active parameters" in method and "2/8" in method
    dense = ParameterCounts(total=10_000, input_embedding=1000, output_projection=1000, tied_embeddings=False)
    assert dense.active_non_embedding == dense.non_embedding and "expert" not in flops_method(dense, ModelShape(2, 64))
    lost = ParameterCounts(total=10_000, input_embedding=1000, output_projection=1000, tied_embeddings=False,
                           n_experts=8, experts_per_token=2)  # a MoE config whose expert weights were not found
    assert lost.active_non_embedding == lost.non_embedding and "over-estimate" in flops_method(lost, None)
