"""Reasoning separated for real: vLLM's own OpenAI server in its CPU image, started by the runner with
``--reasoning-parser deepseek_r1`` (vllm.reasoning_parser), driven on its chat route by lem's load generator.

The tiny random model cannot host a reasoning parser (its tokenizer has no ``<think>``/``</think>``, and random
weights never close a reasoning), so the model is the tiny reasoner of tests/tiny_model.py: the same tiny Llama
shape with think tokens in its tokenizer and weights set so that greedy decoding after ``<think>`` emits 3 word
tokens, ``</think>``, then answer words over and over. Its output is known token by token, so the parser's split is
checked against that truth: every request's first 3 output tokens are reasoning, its answer text is the answer words,
and its first answer token is the chunk after the reasoning's (TTFAT > TTFT). Energy is null with the reason (CPU).

``LEM_TEST_VLLM_IMAGE`` names an image to run instead of the session's freshly built one (``runner:
docker:<image>``): a shared machine whose ``llenergymeasure/vllm`` tag other checkouts use runs this test on an image
of its own.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from conftest import run_lem, vllm_runner, write_yaml
from lem_runner.contract import ExperimentResult

pytestmark = pytest.mark.docker

MAX_TOKENS = 10
REASONING = 3


@pytest.fixture(scope="module")
def reasoner(tmp_path_factory):
    from tiny_model import build_tiny_reasoner

    target = tmp_path_factory.mktemp("tiny-reasoner") / "model"
    return target, build_tiny_reasoner(target, reasoning_tokens=REASONING)


def test_the_chat_route_separates_reasoning_from_the_answer_on_vllm(tmp_path, reasoner, request,
                                                                    no_leftover_containers):
    model, truth = reasoner
    runner, extra = vllm_runner(request)
    cfg = write_yaml(tmp_path / "reasoning.yaml", f"""\
name: reasoning
model: {model}
backend: vllm
scenario: serving
runner: {runner}
dtype: float32
max_input_tokens: 64
max_output_tokens: {MAX_TOKENS}
vllm: {{max_model_len: 256, enforce_eager: true, reasoning_parser: deepseek_r1}}
serving:
  arrival: poisson
  rate: 4
  n_requests: 4
  warmup_requests: 1
""")
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "r"), *extra, timeout=900)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (run_dir,) = [p for p in (tmp_path / "r").rglob("result.json")]
    r = ExperimentResult.model_validate_json(run_dir.read_text())
    s = r.serving
    assert "'reasoning_parser': 'deepseek_r1'" in (run_dir.parent / "server.log").read_text()  # vLLM's own echo
    assert s.n_ok == 4 and s.ttfat_unavailable_reason is None and s.ttfat.n == 4 and s.ttfat_not_reached == 0
    table = pq.read_table(run_dir.parent / "requests.parquet").to_pylist()
    for row in table:
        assert row["output_tokens"] == MAX_TOKENS  # the reasoner never emits an end token
        assert row["reasoning_tokens"] == REASONING
        assert row["reasoning_tokens"] + row["answer_tokens"] == row["output_tokens"]
        assert row["first_answer_token_s"] > row["first_token_s"]
        # the first answer chunk is the one after the 3 reasoning chunks (one token each); vLLM streams nothing for
        # </think> alone, so its token comes with the answer's first (docs/method.md: the known error of the split)
        assert row["first_answer_token_s"] == row["chunk_times_s"][REASONING]
        assert row["chunk_tokens"] == [1] * REASONING + [2] + [1] * (MAX_TOKENS - REASONING - 2)
    assert s.reasoning_tokens == 4 * REASONING and s.answer_tokens == 4 * (MAX_TOKENS - REASONING)
    assert s.ttfat.p50_ms > s.ttft.p50_ms
    assert s.energy_per_request is None and s.energy_unavailable_reason
