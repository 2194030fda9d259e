"""Task accuracy (config quality.task) end to end on the tiny model: `lem run` scores a multiple-choice JSONL
written here after the energy window, and the score in result.json and the export equals the one computed here in
plain torch from the model's own logits (docs/method.md, "Task accuracy")."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
from pathlib import Path

import pytest
from conftest import run_lem, write_yaml

#: (question, choices, answer): answers fixed by hand, not from the model, so the accuracy is whatever the model makes
ITEMS = [
    ("the quick brown fox jumps over the", ["lazy dog", "energy", "tiny model"], 0),
    ("energy per token is measured in", ["joules", "batches", "the fox"], 0),
    ("a tiny model for fast and honest", ["tests", "dog", "prompts are padded"], 1),
    ("batches of prompts are padded on the", ["left", "right", "quick"], 0),
    ("the lazy", ["dog", "fox jumps", "model"], 2),
    ("measured in", ["joules", "tokens", "left before generation"], 1),
]


def _write_items(path: Path) -> Path:
    path.write_text("".join(json.dumps({"question": q, "choices": c, "answer": a}) + "\n" for q, c, a in ITEMS),
                    encoding="utf-8")
    return path


def _truth(model_path: Path) -> tuple[list[list[float]], float, float, float]:
    """Each choice's log-likelihood from one forward pass over question + ' ' + choice (the whole sequence, logits
    read at the choice's positions), and acc, acc_norm, stderr from them: an independent computation."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    scores = []
    with torch.no_grad():
        for q, choices, _ in ITEMS:
            row = []
            for c in choices:
                n_ctx = len(tok(q, add_special_tokens=False)["input_ids"])
                full = tok(q + " " + c, add_special_tokens=False)["input_ids"]
                logits = model(input_ids=torch.tensor([full])).logits[0]
                lp = torch.log_softmax(logits.double(), dim=-1)
                row.append(sum(float(lp[i - 1, full[i]]) for i in range(n_ctx, len(full))))
            scores.append(row)
    hits = [max(range(3), key=s.__getitem__) == a for s, (_, _, a) in zip(scores, ITEMS)]
    norm = [max(range(3), key=lambda i: s[i] / len(c[i])) == a for s, (_, c, a) in zip(scores, ITEMS)]
    acc = sum(hits) / len(hits)
    stdev = math.sqrt(sum((h - acc) ** 2 for h in hits) / (len(hits) - 1))
    return scores, acc, sum(norm) / len(norm), stdev / math.sqrt(len(hits))


@pytest.fixture(scope="module")
def scored(tmp_path_factory, tiny_model_path) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("task")
    _write_items(root / "mc.jsonl")
    cfg = write_yaml(root / "task.yaml", f"""\
model: {tiny_model_path}
n_prompts: 2
max_output_tokens: 4
energy:
  baseline:
    mode: "off"
quality:
  task:
    path: mc.jsonl
""")
    out = root / "results"
    proc = run_lem("run", str(cfg), "-o", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result,) = out.glob("*/result.json")
    return out, json.loads(result.read_text())


def test_backend_loglikelihood_matches_the_models_logits(tiny_model_path):
    from lem_runner.backends.pytorch.backend import PyTorchBackend
    from lem_runner.contract import ExperimentConfig

    backend = PyTorchBackend(ExperimentConfig(model=str(tiny_model_path), device="cpu", dtype="float32"),
                             str(tiny_model_path))
    backend.load()
    try:
        got = backend.loglikelihood([(q, " " + c) for q, cs, _ in ITEMS for c in cs])
    finally:
        backend.close()
    want = [ll for row in _truth(tiny_model_path)[0] for ll in row]
    assert [ll for ll, _ in got] == pytest.approx(want, abs=1e-4)


def test_run_records_the_task_score_beside_the_energy(scored, tiny_model_path):
    _, result = scored
    task = result["quality"]["task"]
    _, acc, acc_norm, stderr = _truth(tiny_model_path)
    assert (task["name"], task["scorer"], task["n_items"]) == ("mc", "builtin", len(ITEMS))
    assert task["accuracy"] == pytest.approx(acc)
    assert task["accuracy_norm"] == pytest.approx(acc_norm)
    assert task["stderr"] == pytest.approx(stderr)
    assert 0 < acc < 1  # the hand-set answers make it neither trivially 0 nor 1
    assert task["duration_s"] > 0
    assert result["config"]["quality"]["task"]["path"].endswith("mc.jsonl")


def test_export_has_the_task_accuracy_column(scored, tmp_path):
    out, result = scored
    proc = run_lem("results", "export", str(out), "--format", "csv", "-o", str(tmp_path / "x.csv"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = csv.DictReader(io.StringIO((tmp_path / "x.csv").read_text()))
    assert float(row["task_accuracy"]) == pytest.approx(result["quality"]["task"]["accuracy"])
    assert row["task_scorer"] == "builtin"


def test_results_show_has_the_task_accuracy_in_80_columns(scored):
    out, result = scored
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    proc = run_lem("results", "show", str(folder), env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "task accuracy" in proc.stdout
    assert f"{result['quality']['task']['accuracy']:.3f} ± {result['quality']['task']['stderr']:.3f}" in proc.stdout
    assert "mc · 6 items · builtin" in proc.stdout
    assert max(map(len, proc.stdout.splitlines())) <= 80


@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None,
                    reason="lm-eval not installed (pip install 'llenergymeasure[lmeval]')")
def test_lm_eval_adapter_scores_the_same_task(tmp_path, tiny_model_path):
    """The harness over the same items (a task YAML on a local JSONL, offline) on lem's engine: the same acc and
    acc_norm as computed here (lm-eval joins question and choice with ' ', as the builtin scorer does)."""
    from lem_runner.backends.pytorch.backend import PyTorchBackend
    from lem_runner.contract import ExperimentConfig
    from lem_runner.contract.task import TaskConfig
    from lem_runner.task import score_task

    data = _write_items(tmp_path / "mc.jsonl")
    yaml_path = write_yaml(tmp_path / "lemtiny.yaml", f"""\
task: lemtiny
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
  - metric: acc_norm
""")
    backend = PyTorchBackend(ExperimentConfig(model=str(tiny_model_path), device="cpu", dtype="float32"),
                             str(tiny_model_path))
    backend.load()
    try:
        score = score_task(TaskConfig(path=str(yaml_path), harness="lm_eval"), backend.loglikelihood)
    finally:
        backend.close()
    _, acc, acc_norm, stderr = _truth(tiny_model_path)
    assert (score.name, score.scorer, score.n_items) == ("lemtiny", "lm_eval", len(ITEMS))
    assert score.accuracy == pytest.approx(acc)
    assert score.accuracy_norm == pytest.approx(acc_norm)
    assert score.stderr == pytest.approx(stderr)
