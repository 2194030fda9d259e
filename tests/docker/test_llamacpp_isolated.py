"""`lem run --isolated` on the llamacpp backend: the runner in its CPU image (the host's llama-cpp-python wheel,
nothing compiled in the image), the embedded GGUF mounted read-only, the same token counts as a local run."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult

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
