"""Long answers on vLLM's own server in its CPU image: the workload of tests/long_answers.py (four requests, output
lengths from a long-tailed lognormal, one over 1,000 tokens, ignore_eos), checked against the draw computed apart."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from conftest import run_lem, vllm_runner, write_yaml
from long_answers import HIGH, POSITIONS, SERVING, check_long_answers, long_context_copy

pytestmark = pytest.mark.docker


def test_long_tailed_answers_run_to_their_drawn_lengths_on_vllm(tmp_path, tiny_model_path, request,
                                                                no_leftover_containers):
    model = long_context_copy(tiny_model_path, tmp_path / "model")
    runner, extra = vllm_runner(request)
    cfg = write_yaml(tmp_path / "long.yaml", f"""\
name: long
model: {model}
backend: vllm
scenario: serving
runner: {runner}
dtype: float32
max_input_tokens: 32
max_output_tokens: {HIGH}
force_output_length: true
vllm: {{max_model_len: {POSITIONS}, enforce_eager: true}}
serving:
{SERVING}""")
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "r"), *extra, timeout=900)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (result,) = (tmp_path / "r").rglob("result.json")
    check_long_answers(result, pq.read_table(result.parent / "requests.parquet").to_pylist())
