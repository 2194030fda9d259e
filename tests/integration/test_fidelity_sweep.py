"""A precision sweep (float32, bfloat16, and int8 weight-only where torchao is installed) on the tiny model with
float32 as the reference: `lem run STUDY` reports agreement, KL and perplexity per point after the energy window, and
each figure equals the one computed here from the model's own logits with transformers directly (docs/method.md,
"Output fidelity", "Perplexity"). Plus the refusals `lem config validate` shares with `lem run`."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from pathlib import Path

import pytest
from conftest import refused_in_one_line, run_lem, write_yaml
from quality_truth import perplexity_truth

N_PROMPTS, MAX_TOKENS = 3, 12
HAVE_TORCHAO = importlib.util.find_spec("torchao") is not None
# the reference is not listed first: the study runs it first all the same
PRECISIONS = ['{dtype: bfloat16}', '{dtype: float32}'] + (
    ['{dtype: float32, pytorch.quantization: torchao-int8-weight-only}'] if HAVE_TORCHAO else [])


def _study(root: Path, model: Path, extra: str = "", alternatives=None) -> Path:
    alts = "\n".join(f"    - {a}" for a in alternatives or PRECISIONS)
    return write_yaml(root / "precision.yaml", f"""\
name: precision
base:
  model: {model}
  n_prompts: {N_PROMPTS}
  max_output_tokens: {MAX_TOKENS}
  energy:
    baseline:
      mode: "off"
  quality:
    reference: dtype=float32
    kl_top_k: null
    perplexity: true
{extra}groups:
  precision:
{alts}
""")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_model_path) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("fidelity")
    proc = run_lem("run", str(_study(root, tiny_model_path)), "-o", str(root / "out"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (study,) = (root / "out").iterdir()
    manifest = json.loads((study / "manifest.json").read_text())
    started = {e["label"]: e["started"] for e in manifest["entries"]}
    assert min(started, key=started.get) == "dtype=float32", started  # the reference ran first
    return {e["label"]: (study / e["result_path"], json.loads((study / e["result_path"] / "result.json").read_text()))
            for e in manifest["entries"]}


@functools.lru_cache(maxsize=4)
def _model(path: Path, dtype: str):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()


def _logprobs(model, prompt: list[int], output: list[int]):
    """log p(. | prompt, output[:i]) for each i, in float64, from one forward pass: the truth for the KL."""
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + output[:-1]])).logits[0, len(prompt) - 1:]
    return torch.log_softmax(logits.double(), dim=-1)


def _greedy(model, prompt: list[int]) -> list[int]:
    """transformers' own greedy generate on one prompt, cut after its first EOS (as a run counts its output)."""
    import torch

    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=int),
                             max_new_tokens=MAX_TOKENS, do_sample=False)[0, len(prompt):].tolist()
    eos = model.generation_config.eos_token_id
    return out[: out.index(eos) + 1] if eos in out else out


def _truth(model_path: Path, reference: dict, dtype: str) -> dict:
    """Agreement, exact match and KL(float32 || dtype) along the reference's tokens, computed here from
    transformers directly: this precision's own greedy output against the reference's tokens, and the KL from both
    models' logits over prompt + reference output."""
    ref32, other = _model(model_path, "float32"), _model(model_path, dtype)
    kl, n_kl, agree, exact, div = 0.0, 0, 0.0, 0, 0
    for req in reference["requests"]:
        p, out = req["prompt_ids"], req["output_ids"]
        lp, lq = _logprobs(ref32, p, out), _logprobs(other, p, out)
        kl += float((lp.exp() * (lp - lq)).sum())
        n_kl += len(out)
        mine = _greedy(other, p)
        d = next((i for i, (a, t) in enumerate(zip(mine, out)) if a != t), min(len(mine), len(out)))
        agree, exact, div = agree + d / len(out), exact + (mine == out), div + d
    n = len(reference["requests"])
    return {"kl": kl / n_kl, "tokens": n_kl, "agreement": agree / n, "exact": exact / n, "divergence": div / n}


def _perplexity(model_path: Path, dtype: str) -> tuple[float, int]:
    """The bundled text's perplexity on the tiny model (context 1024: windows of 1023 tokens)."""
    from lem_runner.quality.perplexity import bundled_text
    from transformers import AutoTokenizer

    return perplexity_truth(_model(model_path, dtype), AutoTokenizer.from_pretrained(model_path),
                            bundled_text("pride-and-prejudice"), 1023)


def test_the_reference_runs_first_and_leaves_its_outputs(sweep, tiny_model_path):
    import torch

    folder, result = sweep["dtype=float32"]
    reference = json.loads((folder / "reference_outputs.json").read_text())
    assert len(reference["requests"]) == N_PROMPTS and reference["kl_top_k"] is None
    model = _model(tiny_model_path, "float32")
    for req in reference["requests"]:  # its tokens are float32 greedy decoding of its prompts, step by step here
        ids = list(req["prompt_ids"])
        for _ in range(len(req["output_ids"])):
            with torch.no_grad():
                ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
        assert ids[len(req["prompt_ids"]):] == req["output_ids"]
    fid = result["quality"]["fidelity"]
    assert (fid["exact_match"], fid["agreement"], fid["kl_mean_nats"]) == (1.0, 1.0, 0.0)
    assert fid["kl_tokens"] == N_PROMPTS * MAX_TOKENS and fid["kl_source"] == "full distribution"


@pytest.mark.parametrize("label, dtype", [("dtype=bfloat16", "bfloat16")])
def test_bfloat16_against_float32_matches_the_models_own_logits(sweep, tiny_model_path, label, dtype):
    ref_folder, _ = sweep["dtype=float32"]
    reference = json.loads((ref_folder / "reference_outputs.json").read_text())
    folder, result = sweep[label]
    # the reference's outputs reached the run as a file in its own folder, not inside its request
    assert (folder / "fidelity_reference.json").read_bytes() == (ref_folder / "reference_outputs.json").read_bytes()
    assert json.loads((folder / "request.json").read_text())["fidelity"] == {
        "reference": "dtype=float32", "is_reference": False, "outputs_file": "fidelity_reference.json",
        "missing": None}
    fid = result["quality"]["fidelity"]
    want = _truth(tiny_model_path, reference, dtype)
    assert fid["reference"] == "dtype=float32" and fid["n_requests"] == N_PROMPTS
    assert fid["kl_tokens"] == want["tokens"]
    assert fid["kl_mean_nats"] == pytest.approx(want["kl"], rel=1e-6)
    assert fid["kl_mean_nats"] > 0  # bfloat16 is not float32
    assert fid["agreement"] == pytest.approx(want["agreement"])
    assert fid["exact_match"] == pytest.approx(want["exact"])
    assert fid["first_divergence_mean"] == pytest.approx(want["divergence"])
    assert fid["duration_s"] > 0


@pytest.mark.skipif(not HAVE_TORCHAO, reason="torchao not installed: no int8 weight-only point")
def test_int8_weight_only_point_has_its_figures(sweep):
    (label,) = [k for k in sweep if "torchao" in k]
    fid = sweep[label][1]["quality"]["fidelity"]
    assert fid["kl_mean_nats"] is not None and fid["kl_mean_nats"] > 0


@pytest.mark.parametrize("label, dtype", [("dtype=float32", "float32"), ("dtype=bfloat16", "bfloat16")])
def test_perplexity_per_point_matches_the_models_own_logits(sweep, tiny_model_path, label, dtype):
    ppl = sweep[label][1]["quality"]["perplexity"]
    want, tokens = _perplexity(tiny_model_path, dtype)
    assert (ppl["text"], ppl["tokens"], ppl["window_tokens"]) == ("pride-and-prejudice", tokens, 1023)
    assert tokens > 2 * 1023  # 3379 tokens: four windows on this tokenizer, the last reaching back
    assert ppl["perplexity"] == pytest.approx(want, rel=1e-5)


def test_the_window_holds_the_prompts_alone(sweep):
    # the quality passes run after the window: its tokens are the generated ones, its time ends before them
    folder, result = sweep["dtype=float32"]
    reference = json.loads((folder / "reference_outputs.json").read_text())
    assert result["output_tokens"] == sum(len(r["output_ids"]) for r in reference["requests"])
    assert all(r["quality"]["perplexity"]["duration_s"] > 0 for _, r in sweep.values())


def test_results_show_and_export_carry_the_fidelity_figures(sweep, tmp_path):
    folder, result = sweep["dtype=bfloat16"]
    proc = run_lem("results", "show", str(folder), env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "output fidelity" in proc.stdout and "dtype=float32" in proc.stdout
    assert f"agreement {result['quality']['fidelity']['agreement']:.3f}" in proc.stdout
    assert max(map(len, proc.stdout.splitlines())) <= 80
    proc = run_lem("results", "export", str(folder.parent), "--format", "csv", "-o", str(tmp_path / "x.csv"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import csv

    rows = {r["fidelity_reference"] and r["experiment_id"]: r for r in csv.DictReader((tmp_path / "x.csv").open())}
    row = rows[folder.name]
    assert float(row["fidelity_kl_mean_nats"]) == pytest.approx(result["quality"]["fidelity"]["kl_mean_nats"])
    assert float(row["perplexity"]) == pytest.approx(result["quality"]["perplexity"]["perplexity"])
    assert int(row["perplexity_tokens"]) == result["quality"]["perplexity"]["tokens"]


def test_a_sampled_point_with_a_reference_is_refused_by_validate_and_run(tmp_path, tiny_model_path):
    study = _study(tmp_path, tiny_model_path, alternatives=['{dtype: float32}',
                                                            '{dtype: bfloat16, decoding.do_sample: true}'])
    validated = refused_in_one_line(run_lem("config", "validate", str(study)), "dtype=bfloat16",
                         "quality.reference: agreement with the reference needs greedy decoding")
    ran = refused_in_one_line(run_lem("run", str(study), "-o", str(tmp_path / "r")), "needs greedy decoding")
    assert validated == ran
    assert not (tmp_path / "r").exists()


def test_a_reference_that_names_no_point_or_a_single_run_isrefused_in_one_line(tmp_path, tiny_model_path):
    study = _study(tmp_path, tiny_model_path, alternatives=['{dtype: float16}', '{dtype: bfloat16}'])
    refused_in_one_line(run_lem("config", "validate", str(study)), "quality.reference: no point of the study is 'dtype=float32'")
    single = write_yaml(tmp_path / "one.yaml", f"model: {tiny_model_path}\nquality:\n  reference: x\n")
    refused_in_one_line(run_lem("config", "validate", str(single)), "quality.reference: 'x' names a point of a study")


def test_pytorch_top_k_logprobs_are_the_full_distributions_top_and_the_given_token(tiny_model_path):
    """The default KL source (top-k): each position's dict holds the k most likely tokens and the continuation's own
    token, at the values of the full distribution (both from the backend; the full one checked above)."""
    from lem_runner.backends.pytorch.backend import PyTorchBackend
    from lem_runner.contract import ExperimentConfig

    backend = PyTorchBackend(ExperimentConfig(model=str(tiny_model_path), device="cpu", dtype="float32"),
                             str(tiny_model_path))
    backend.load()
    try:
        prompt, cont = [5, 17, 42], [7, 300, 9]
        full = backend.next_token_logprobs(prompt, cont, None)
        top = backend.next_token_logprobs(prompt, cont, 3)
        with pytest.raises(ValueError, match="at least one prompt and one continuation token"):
            backend.next_token_logprobs(prompt, [], 3)
    finally:
        backend.close()
    assert len(full) == len(top) == len(cont)
    for row, dist, token in zip(top, full, cont):
        best3 = sorted(range(len(dist)), key=dist.__getitem__, reverse=True)[:3]
        assert set(row) == set(best3) | {token}
        assert all(row[i] == pytest.approx(dist[i], abs=1e-9) for i in row)
        assert math.fsum(math.exp(v) for v in dist) == pytest.approx(1.0, abs=1e-9)


def test_the_study_summary_and_compare_carry_the_quality_figures(sweep):
    folder, result = sweep["dtype=bfloat16"]
    summary = json.loads((folder.parent / "study_summary.json").read_text())
    (point,) = [p for p in summary["aggregates"] if p["label"] == "dtype=bfloat16"]
    assert point["fidelity_kl_mean_nats"]["mean"] == pytest.approx(result["quality"]["fidelity"]["kl_mean_nats"])
    assert point["perplexity"]["mean"] == pytest.approx(result["quality"]["perplexity"]["perplexity"])
    proc = run_lem("results", "compare", str(folder.parent), env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [ln.split()[0] for ln in proc.stdout.splitlines() if ln.strip()]
    assert {"agreement", "KL", "perplexity"} <= set(rows) and "task" not in rows  # no task: no task row
