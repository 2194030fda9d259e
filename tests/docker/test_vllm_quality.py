"""vLLM's teacher-forced figures against transformers: lem's VLLMBackend in the vLLM CPU image (float32) answers
``loglikelihood`` and ``next_token_logprobs`` for fixed inputs and vLLM generates greedily (one container,
tests/docker/vllm_teacher_forced.py); the same numbers are computed here on the host from the tiny model's own
float32 logits with transformers (docs/method.md, "Task accuracy" and "On vLLM").

Tolerance. Both engines run the same float32 weights on CPU but not the same kernels (vLLM's CPU attention and
fused RMSNorm/SiLU against transformers' eager PyTorch ops; different summation orders), so a log-probability moves
by float32 rounding carried through 4 layers: ~1e-7 relative per op, seen here at most 1.1e-6 absolute per
token. ``TOL`` = 1e-4 per token log-probability (and n x TOL for a sum over n tokens) is 1-2 orders above what was
seen and ~2 orders below the gaps that decide anything on this random model (neighbouring top-k log-probabilities
are ~1e-2 apart). Where two tokens are closer than 2 x TOL, their order is a tie and not checked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

TOL = 1e-4
#: (context, continuation) as the builtin task scorer forms them; an empty context takes BOS
PAIRS = [("the quick brown fox", " jumps over the lazy dog"), ("energy per token is measured in", " joules"),
         ("", "batches of prompts"), ("a tiny model for", " fast")]
PROMPTS = ["the quick brown fox", "energy per token is", "batches of prompts are padded on the", "a tiny"]
NEW_TOKENS = 16
TOP_K = [5, None]  # None: vLLM's cap (the engine's max_logprobs, 20 by default)
SCRIPT = Path(__file__).with_name("vllm_teacher_forced.py")
RUNNERS = Path(__file__).resolve().parents[2] / "runners"


def _hf(model_path: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()

    def logprobs(ids: list[int]):
        """log p(. | ids[:i]) for every i >= 1, in float64 from the float32 logits: rows 0..len-2."""
        with torch.no_grad():
            return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)[:-1]

    return tok, model, logprobs


@pytest.fixture(scope="module")
def inputs(tiny_model_path) -> dict:
    """The fixed inputs, with the teacher-forced sequences in token ids: each prompt followed by transformers' own
    greedy continuation (so the figures are read along a real output, as output fidelity reads them); the last
    pair's continuation is the third prompt's greedy output as text."""
    import torch

    tok, model, _ = _hf(tiny_model_path)
    prompts = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    greedy = []
    with torch.no_grad():
        for ids in prompts:
            out = model.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                 do_sample=False, attention_mask=torch.ones(1, len(ids), dtype=torch.long))
            greedy.append(out[0, len(ids):].tolist())
    own = tok.decode(greedy[2][:8])  # this prompt's greedy text re-tokenises to the same ids (checked)
    assert tok(PROMPTS[2] + own, add_special_tokens=False)["input_ids"] == prompts[2] + greedy[2][:8]
    pairs = [*PAIRS, (PROMPTS[2], own)]
    return {"pairs": pairs, "forced": [[p, g] for p, g in zip(prompts, greedy)], "top_k": TOP_K,
            "prompts": prompts, "new_tokens": NEW_TOKENS, "hf_greedy": greedy}


@pytest.fixture(scope="module")
def vllm_answers(engine, vllm_cpu_image, tiny_model_path, inputs) -> dict:
    """The script's JSON from one contained run of the image (no network, read-only root, the model and this tree's
    runner package mounted read-only, so it checks this checkout's backend whatever runner the image holds)."""
    spec = {k: v for k, v in inputs.items() if k != "hf_greedy"}
    container = engine.containers.run(
        vllm_cpu_image.image_id, entrypoint=["/opt/lem/bin/python", "/lem/probe.py"],
        command=["/lem/model", json.dumps(spec)], detach=True, network_mode="none", read_only=True,
        tmpfs={"/tmp": "rw,exec,nosuid,size=4g"}, shm_size="1g", cap_drop=["ALL"],
        security_opt=["no-new-privileges"], user=f"{os.getuid()}:{os.getgid()}",
        environment={"PYTHONPATH": "/lem/src"},
        volumes={str(tiny_model_path): {"bind": "/lem/model", "mode": "ro"},
                 str(RUNNERS): {"bind": "/lem/src", "mode": "ro"},
                 str(SCRIPT): {"bind": "/lem/probe.py", "mode": "ro"}},
        labels={"lem.test": "vllm_quality"})
    try:
        status = container.wait(timeout=600)["StatusCode"]
        logs = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
    finally:
        container.remove(force=True)
    lines = [ln for ln in logs.splitlines() if ln.startswith("LEM-RESULT ")]
    assert status == 0 and lines, logs[-4000:]
    return json.loads(lines[-1].removeprefix("LEM-RESULT "))


def test_loglikelihood_matches_transformers(vllm_answers, inputs, tiny_model_path):
    tok, _, logprobs = _hf(tiny_model_path)
    assert len(vllm_answers["loglikelihood"]) == len(inputs["pairs"])
    worst = 0.0
    for (context, continuation), (ll, greedy) in zip(inputs["pairs"], vllm_answers["loglikelihood"]):
        n_ctx = len(tok(context, add_special_tokens=False)["input_ids"])
        whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
        if n_ctx == 0:
            whole, n_ctx = [tok.bos_token_id, *whole], 1
        lp = logprobs(whole)
        picked = [lp[i - 1, whole[i]] for i in range(n_ctx, len(whole))]
        want = float(sum(picked))
        assert ll == pytest.approx(want, abs=TOL * len(picked)), (context, continuation)
        worst = max(worst, abs(ll - want))
        assert greedy == all(lp[i - 1].argmax() == whole[i] for i in range(n_ctx, len(whole)))
    print(f"loglikelihood: largest |vLLM - transformers| {worst:.2e} over {len(inputs['pairs'])} pairs")
    assert vllm_answers["loglikelihood"][-1][1] is True  # the model's own greedy output, as text: greedy


def test_next_token_logprobs_match_transformers_along_a_greedy_output(vllm_answers, inputs, tiny_model_path):
    _, _, logprobs = _hf(tiny_model_path)
    assert vllm_answers["cap"] == 20  # vLLM's default max_logprobs: what top_k None gives
    checked = ties = 0
    worst = 0.0
    for k_key, per_sequence in vllm_answers["forced"].items():
        k = vllm_answers["cap"] if k_key == "None" else int(k_key)
        for (prompt, cont), dicts in zip(inputs["forced"], per_sequence):
            lp = logprobs([*prompt, *cont])[len(prompt) - 1:]
            assert len(dicts) == len(cont)
            for j, got in enumerate(dicts):
                got = {int(t): v for t, v in got.items()}
                assert cont[j] in got and len(got) in (k, k + 1)  # the forced token always, beside the top k
                for t, v in got.items():
                    assert v == pytest.approx(float(lp[j, t]), abs=TOL), (k, j, t)
                    checked += 1
                    worst = max(worst, abs(v - float(lp[j, t])))
                top = lp[j].topk(k + 1)
                want = set(top.indices[:k].tolist())
                if float(top.values[k - 1] - top.values[k]) < 2 * TOL:
                    ties += 1  # the k-th and (k+1)-th are a tie within the tolerance: the set is not decided
                    continue
                assert want <= set(got), (k, j)
    print(f"next_token_logprobs: {checked} log-probabilities, largest |vLLM - transformers| {worst:.2e}; "
          f"{ties} top-k boundaries tied within 2 x {TOL:g}")
    assert checked > 500 and ties < 3
    assert "max_logprobs" in vllm_answers["over_cap"]


def test_greedy_outputs_of_vllm_and_transformers_agree(vllm_answers, inputs):
    """Token for token on all prompts; where they part, the first divergence is reported."""
    diverged = [(i, next(j for j, (a, b) in enumerate(zip(v, h)) if a != b))
                for i, (v, h) in enumerate(zip(vllm_answers["greedy"], inputs["hf_greedy"])) if v != h]
    print(f"greedy: {len(PROMPTS) - len(diverged)}/{len(PROMPTS)} prompts identical over {NEW_TOKENS} tokens; "
          f"first divergence (prompt, token): {diverged or 'none'}")
    assert diverged == []
