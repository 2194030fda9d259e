"""`lem run --isolated` on the llamacpp backend: the runner in its CPU image (the host's llama-cpp-python wheel,
nothing compiled in the image), the embedded GGUF mounted read-only, the same token counts as a local run; and a
serving run in the image, llama-cpp-python's server behind lem's usage middleware, each request's input tokens the
library's own count."""

from __future__ import annotations

import importlib.util
import json

import pyarrow.parquet as pq
import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult
from llamacpp_truth import library_prompt_tokens

pytestmark = [pytest.mark.docker,
              pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                 reason="llama-cpp-python is not installed (make llamacpp builds its wheel and "
                                        "installs it; the image reuses that wheel)")]


@pytest.fixture(scope="module")
def llamacpp_image(engine):
    from llenergymeasure.images.build import build_image

    return build_image(engine, "llamacpp", cpu=True)


def _result(root) -> ExperimentResult:
    (run,) = [p for p in root.iterdir() if p.is_dir()]
    return ExperimentResult.model_validate_json((run / "result.json").read_text())


def test_isolated_llamacpp_run_counts_the_same_tokens_as_local(tmp_path, llamacpp_image, no_leftover_containers):
    cfg = write_yaml(tmp_path / "exp.yaml", """\
name: llamacpp-isolated
model: "embedded:SmolLM2-135M-Instruct"
backend: llamacpp
n_prompts: 3
prompts: {source: synthetic, input_tokens: 12}
max_input_tokens: 12
max_output_tokens: 6
force_output_length: true
llamacpp: {n_threads: 1, n_threads_batch: 1}
""")
    local = run_lem("run", str(cfg), "-o", str(tmp_path / "local"), timeout=600)
    assert local.returncode == 0, local.stderr[-3000:]
    isolated = run_lem("run", str(cfg), "-o", str(tmp_path / "isolated"), "--isolated", timeout=600)
    assert isolated.returncode == 0, isolated.stderr[-3000:]
    a, b = _result(tmp_path / "local"), _result(tmp_path / "isolated")
    assert (b.whole_run.input_tokens, b.output_tokens) == (a.whole_run.input_tokens, a.output_tokens) == (36, 18)
    assert b.environment.image == llamacpp_image.image_id and a.environment.image is None
    assert b.model_path == "/lem/model/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert b.environment.libraries["llama-cpp-python"] == a.environment.libraries["llama-cpp-python"]
    assert b.total_energy_j is None and b.energy.unavailable_reason


def test_isolated_llamacpp_serving_counts_each_requests_input_tokens(tmp_path, llamacpp_image, no_leftover_containers):
    texts = ["The river", "Light on the water over the stone bridge"]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts), encoding="utf-8")
    cfg = write_yaml(tmp_path / "serve.yaml", f"""\
name: llamacpp-serving-isolated
model: "embedded:SmolLM2-135M-Instruct"
backend: llamacpp
scenario: serving
n_prompts: 2
prompts: {{source: jsonl, path: {prompts}}}
max_output_tokens: 6
force_output_length: true
llamacpp: {{n_threads: 1, n_threads_batch: 1}}
serving: {{arrival: concurrency, concurrency: 1, n_requests: 2, warmup_requests: 1}}
""")
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "out"), "--isolated", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    rows = pq.read_table(run / "requests.parquet").to_pylist()
    assert sorted(r["input_tokens"] for r in rows) == sorted(library_prompt_tokens(texts))
    assert [r["output_tokens"] for r in rows] == [6, 6] and all(r["status"] == "ok" for r in rows)
    assert "usage_server" in _result(tmp_path / "out").serving.server
