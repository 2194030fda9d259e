"""A tiny Mixtral-shaped random model (8 experts, 2 per token) through the real parameter counting and through `lem
run` end to end (the real CLI, the real runner, the PyTorch backend on CPU): FLOPs come from ACTIVE parameters,
checked against a hand computation of the model's shapes."""

from __future__ import annotations

import json

import pytest
from conftest import run_lem, write_yaml
from lem_runner.backends.checkpoint import llama_like_parameter_counts, model_shape, parameter_counts
from lem_runner.contract import ExperimentResult
from lem_runner.measurement.flops import estimate_flops
from tiny_model import TINY_MIXTRAL, build_tiny_mixtral, hand_active_body, hand_request_flops


@pytest.fixture(scope="module")
def tiny_mixtral(tmp_path_factory):
    return build_tiny_mixtral(tmp_path_factory.mktemp("tiny-mixtral"))


def test_moe_flops_count_active_experts_from_checkpoint_headers(tiny_mixtral):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_mixtral)
    counts, source = parameter_counts(tiny_mixtral, config)
    active, every, head = hand_active_body(TINY_MIXTRAL, config.vocab_size)
    assert source == "checkpoint safetensors headers"
    assert (counts.n_experts, counts.experts_per_token) == (8, 2)
    assert counts.non_embedding == every and counts.output_projection == head
    assert counts.active_non_embedding == active
    pre, dec = estimate_flops(counts, model_shape(config), [(8, 3), (5, 1)])
    v = config.vocab_size
    assert pre + dec == pytest.approx(hand_request_flops(TINY_MIXTRAL, 8, 3, v) + hand_request_flops(TINY_MIXTRAL, 5, 1, v))
    # every expert counted would be ~2.6x too high on this shape
    assert every / active > 2.5



def test_moe_flops_of_the_real_mixtral_config_formula_count_active_experts(tiny_mixtral):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_mixtral)
    counts = llama_like_parameter_counts(config)  # the path taken for a checkpoint without safetensors
    active, every, _ = hand_active_body(TINY_MIXTRAL, config.vocab_size)
    assert (counts.non_embedding, counts.active_non_embedding) == (every, active)


def test_lem_run_on_a_tiny_mixtral_reports_flops_from_active_parameters(tmp_path, tiny_mixtral):
    study = write_yaml(tmp_path / "moe.yaml", f"""\
name: moe
n_cycles: 1
base:
  model: {tiny_mixtral}
  n_prompts: 2
  max_output_tokens: 3
  force_output_length: true
  prompts: {{source: synthetic, input_tokens: 8}}
  warmup: {{n_batches: 0}}
  pytorch: {{batch_size: 2}}
sweep:
  max_output_tokens: [3]
""")
    out = tmp_path / "r"
    proc = run_lem("run", str(study), "-o", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result_file,) = out.glob("*/*/result.json")
    result = ExperimentResult.model_validate_json(result_file.read_text())
    run = result.whole_run
    assert (run.n_requests, run.input_tokens, run.output_tokens) == (2, 16, 6)
    vocab = json.loads((tiny_mixtral / "config.json").read_text())["vocab_size"]
    active, every, _ = hand_active_body(TINY_MIXTRAL, vocab)
    assert result.flops is not None
    assert result.flops.active_non_embedding_parameters == active
    assert result.backend_details["parameters_non_embedding"] == every
    assert result.headline.flops == pytest.approx(2 * hand_request_flops(TINY_MIXTRAL, 8, 3, vocab))
    assert "active parameters" in result.flops.method and "2/8" in result.flops.method
