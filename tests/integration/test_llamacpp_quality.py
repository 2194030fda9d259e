"""The llamacpp backend's quality hooks for real (backends/llamacpp/logprobs.py): next-token log-probabilities, the
rolling log-likelihood (perplexity) and continuation log-likelihoods (task accuracy), each checked against a truth
computed here without lem's code:

- on a float32 GGUF (the embedded SmolLM2's Q4_1/Q8_0 tensors dequantised by gguf-py, so llama.cpp and transformers
  read the very same float32 weights from one file), against transformers' float64 log-softmax of its float32
  logits; with a float32 KV cache the two implementations agree to float32 rounding;
- on the embedded Q4_1 GGUF as lem measures it (f16 KV cache, llama.cpp's defaults), against a plain
  ``llama_cpp.Llama(logits_all=True)`` (llama-cpp-python's own way to keep every position's logits) and its own
  greedy stream; generating again after scoring gives the same tokens (the measured context is not touched).

Skipped only where llama-cpp-python is not installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import make_config
from llamacpp_truth import f32_gguf, library_greedy, library_llama, library_logprobs, library_perplexity
from quality_truth import perplexity_truth

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                reason="llama-cpp-python is not installed (make llamacpp builds and installs it)")

PROMPTS = ["The quick brown fox jumps over the lazy dog, and then", "Energy per token is measured in",
           "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"]
#: float32 weights on both sides, float32 KV cache: per-token log-probability differences are float32 rounding
#: (seen at most 5.1e-5 over the vocabulary, KL 1.1e-11 nats)
F32_TOL = 2e-4


def _backend(path, **llamacpp):
    from lem_runner.backends.llamacpp.backend import LlamaCppBackend

    cfg = make_config(model=str(path), backend="llamacpp", max_input_tokens=64, max_output_tokens=12,
                      llamacpp={"n_threads": 2, "n_threads_batch": 2, **llamacpp})
    backend = LlamaCppBackend(cfg, str(path))
    backend.load()
    return backend


@pytest.fixture(scope="module")
def f32_path(tmp_path_factory):
    from llenergymeasure.models.embedded import _gguf_path

    return f32_gguf(_gguf_path(), tmp_path_factory.mktemp("gguf") / "smollm2-f32.gguf")


@pytest.fixture(scope="module")
def hf(f32_path):
    """transformers on the float32 GGUF itself: the model in float32 and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(f32_path.parent), f32_path.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder, gguf_file=name)


@pytest.fixture(scope="module")
def f32_backend(f32_path):
    backend = _backend(f32_path, type_k="f32", type_v="f32")
    yield backend
    backend.close()


def _hf_logprobs(model, tokens: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tokens])).logits[0].double()
    return torch.log_softmax(logits, dim=-1).numpy()


def test_next_token_logprobs_equal_transformers_on_the_same_float32_weights(f32_backend, hf):
    model, tok = hf
    for text in PROMPTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        prompt, cont = ids[:5], ids[5:]
        truth = _hf_logprobs(model, prompt + cont[:-1])[len(prompt) - 1:]
        full = np.array(f32_backend.next_token_logprobs(prompt, cont, None))
        assert full.shape == truth.shape == (len(cont), model.config.vocab_size)
        assert np.abs(full - truth).max() < F32_TOL
        kl = (np.exp(truth) * (truth - full)).sum(axis=1)
        assert kl.mean() < 1e-9, kl
        top = f32_backend.next_token_logprobs(prompt, cont, 5)
        for row, want, own in zip(top, truth, cont):
            assert own in row and len(row) in (5, 6)
            for t, lp in row.items():
                assert lp == pytest.approx(want[t], abs=F32_TOL)
            fifth = np.sort(want)[-5]
            best = sorted(row, key=row.get, reverse=True)[:5]  # transformers' top 5, but for a tie at 5th place
            assert all(want[t] >= fifth - F32_TOL for t in best)


def test_next_token_logprobs_are_offset_by_one_from_their_input(f32_backend, hf):
    """The test above would fail on a shifted row: the rows predict the next token, not the current one."""
    model, tok = hf
    ids = tok(PROMPTS[0], add_special_tokens=False)["input_ids"]
    truth = _hf_logprobs(model, ids[:-1])[3:]
    got = np.array(f32_backend.next_token_logprobs(ids[:4], ids[4:], None))
    assert np.abs(got[1:] - truth[:-1]).max() > 1.0  # a shift is far beyond rounding


def test_rolling_loglikelihood_equals_transformers_over_lm_evals_windows(f32_backend, hf):
    from lem_runner.quality.perplexity import bundled_text, perplexity_from

    model, tok = hf
    text = bundled_text("pride-and-prejudice")
    total, tokens, window = f32_backend.rolling_loglikelihood(text)
    assert window == 1024  # min(context 8192 - 1, 1024, the scoring context's n_ctx - 1)
    want, n = perplexity_truth(model, tok, text, window)
    assert tokens == n > window  # two windows, the last reaching back
    assert perplexity_from(total, tokens) == pytest.approx(want, rel=1e-5)


def test_loglikelihood_equals_transformers_with_is_greedy(f32_backend, hf):
    model, tok = hf
    ctx = "The capital of France is"
    ctx_ids = tok(ctx, add_special_tokens=False)["input_ids"]
    greedy = tok.decode([int(np.argmax(_hf_logprobs(model, ctx_ids)[-1]))])
    pairs = [(ctx, " Paris"), (ctx, " a city of bridges"), (ctx, greedy), ("", "Hello there")]
    got = f32_backend.loglikelihood(pairs)
    for (context, continuation), (ll, is_greedy) in zip(pairs, got):
        c = tok(context, add_special_tokens=False)["input_ids"]
        whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
        cont = whole[len(c):]
        if not c:
            whole, c = [tok.bos_token_id, *whole], [tok.bos_token_id]
        lp = _hf_logprobs(model, whole[:-1])[len(c) - 1:]
        picked = lp[np.arange(len(cont)), cont]
        assert ll == pytest.approx(float(picked.sum()), abs=F32_TOL * len(cont))
        assert is_greedy == bool((lp.argmax(axis=1) == np.array(cont)).all())
    assert got[2][1] is True and got[1][1] is False


@pytest.fixture(scope="module")
def q4():
    """The embedded Q4_1 GGUF as lem measures it (llama.cpp's default f16 KV cache) and a plain logits_all Llama."""
    from llenergymeasure.models.embedded import _gguf_path

    backend = _backend(_gguf_path())
    plain = library_llama(_gguf_path())
    yield backend, plain
    backend.close()
    plain.close()


@pytest.fixture(scope="module")
def q4_perplexity(q4):
    """llama-cpp-python's own perplexity of the bundled text over 1024-token windows on the Q4_1 GGUF, and its token
    count: computed once (about 20 s here) for the hook's test and the study's."""
    from lem_runner.quality.perplexity import bundled_text

    return library_perplexity(q4[1], bundled_text("pride-and-prejudice"), 1024)


def test_records_carry_the_engines_ids_and_scoring_leaves_the_measured_context_alone(q4):
    backend, plain = q4
    first = backend.generate(PROMPTS)
    for prompt, rec in zip(PROMPTS, first):
        ids = plain.tokenize(prompt.encode(), add_bos=True, special=True)
        assert list(rec.prompt_ids) == ids and rec.input_tokens == len(ids)
        assert list(rec.output_ids) == library_greedy(plain, ids, 12)
        assert rec.output_tokens == len(rec.output_ids)
        backend.next_token_logprobs(list(rec.prompt_ids), list(rec.output_ids), 20)
    backend.rolling_loglikelihood("A short text to score between two generations.")
    again = backend.generate(PROMPTS)
    assert [r.output_ids for r in again] == [r.output_ids for r in first]
    assert backend._scorer.ctx != backend._llm.ctx  # scored on a context of its own
    backend.adopt(backend.config)  # the next run starts without it
    assert backend._scorer is None


def test_next_token_logprobs_equal_llama_cpp_pythons_own_logits_on_the_q4_gguf(q4):
    backend, plain = q4
    for prompt in PROMPTS:
        ids = plain.tokenize(prompt.encode(), add_bos=True, special=True)
        out = library_greedy(plain, ids, 12)
        truth = library_logprobs(plain, ids + out[:-1])[len(ids) - 1:]
        got = np.array(backend.next_token_logprobs(ids, out, None))
        assert np.abs(got - truth).max() < 1e-5
        # the greedy stream's tokens are the teacher-forced argmax (or a near-tie in it)
        for row, token in zip(truth, out):
            assert row[token] >= row.max() - 1e-3


def test_perplexity_on_the_q4_gguf_equals_llama_cpp_pythons_own_logits(q4, q4_perplexity):
    from lem_runner.quality.perplexity import bundled_text, perplexity_from

    backend, _ = q4
    total, tokens, window = backend.rolling_loglikelihood(bundled_text("pride-and-prejudice"))
    want, n = q4_perplexity
    assert (tokens, window) == (n, 1024)
    assert perplexity_from(total, tokens) == pytest.approx(want, rel=1e-6)


STUDY = """\
name: pt-llamacpp
base:
  model: "embedded:SmolLM2-135M-Instruct"
  n_prompts: 3
  max_output_tokens: 12
  runner: local
  energy:
    baseline:
      mode: "off"
  quality:
    reference: backend=pytorch
    perplexity: true
  llamacpp: {n_threads: 2, n_threads_batch: 2}
sweep:
  backend: [llamacpp, pytorch]
"""


def test_a_pytorch_reference_and_a_llamacpp_point_in_one_study(tmp_path, q4, q4_perplexity):
    """`lem run` on a study with backend: [pytorch, llamacpp] and quality {reference: backend=pytorch, perplexity}:
    the llamacpp point's fidelity and perplexity equal what llama-cpp-python itself gives along the reference's
    tokens (its own greedy stream, its own logits_all logits)."""
    import json

    from conftest import run_lem, write_yaml
    from lem_runner.quality.fidelity import position_kl

    study = write_yaml(tmp_path / "study.yaml", STUDY)
    proc = run_lem("run", str(study), "-o", str(tmp_path / "out"), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (root,) = (tmp_path / "out").iterdir()
    entries = json.loads((root / "manifest.json").read_text())["entries"]
    points = {e["label"]: root / e["result_path"] for e in entries}
    reference = json.loads((points["backend=pytorch"] / "reference_outputs.json").read_text())
    mine = json.loads((points["backend=llamacpp"] / "fidelity_outputs.json").read_text())
    result = json.loads((points["backend=llamacpp"] / "result.json").read_text())
    fid, ppl = result["quality"]["fidelity"], result["quality"]["perplexity"]
    assert not [w for w in result["warnings"] if w.startswith("quality.")], result["warnings"]
    plain = q4[1]  # a plain logits_all Llama of the same GGUF, nothing of lem's
    agree = exact = div = kl = 0.0
    n_kl = 0
    for ref, own in zip(reference["requests"], mine["requests"]):
        p, out = ref["prompt_ids"], ref["output_ids"]
        assert own["prompt_ids"] == p
        greedy = library_greedy(plain, p, 12)
        assert own["output_ids"] == greedy  # the point's tokens are llama.cpp's own greedy stream
        d = next((i for i, (a, b) in enumerate(zip(out, greedy)) if a != b), min(len(out), len(greedy)))
        agree, exact, div = agree + d / len(out), exact + (greedy == out), div + d
        truth = library_logprobs(plain, p + out[:-1])[len(p) - 1:]
        for row_ref, row, token in zip(ref["logprobs"], truth, out):
            top = {int(t): float(row[t]) for t in np.argsort(row)[-20:]} | {token: float(row[token])}
            kl += position_kl({int(k): v for k, v in row_ref.items()}, top)[0]
            n_kl += 1
    n = len(reference["requests"])
    assert fid["reference"] == "backend=pytorch" and fid["n_requests"] == n == 3
    assert (fid["agreement"], fid["exact_match"], fid["first_divergence_mean"]) == pytest.approx(
        (agree / n, exact / n, div / n))
    assert fid["kl_tokens"] == n_kl and fid["kl_source"] == "top-k 20 + remainder"
    assert fid["kl_mean_nats"] == pytest.approx(kl / n_kl, rel=1e-4)
    assert fid["kl_mean_nats"] > 1e-6  # Q4_1 weights and Q8 activations against PyTorch's bf16 dequantisation
    want, tokens = q4_perplexity
    assert (ppl["tokens"], ppl["window_tokens"]) == (tokens, 1024)
    assert ppl["perplexity"] == pytest.approx(want, rel=1e-6)
    ref_ppl = json.loads((points["backend=pytorch"] / "result.json").read_text())["quality"]["perplexity"]
    assert (ref_ppl["tokens"], ref_ppl["window_tokens"]) == (tokens, 1024)  # one text, one window: comparable
    print(f"\nllamacpp (Q4_1) against pytorch: agreement {fid['agreement']:.4f}, exact {fid['exact_match']:.3f}, "
          f"KL {fid['kl_mean_nats']:.3g} nats over {n_kl}; perplexity llamacpp {ppl['perplexity']:.4f}, "
          f"pytorch {ref_ppl['perplexity']:.4f}")


#: (question, choices, answer): answers fixed by hand, so the accuracy is whatever the model makes of them
ITEMS = [("The capital of France is", ["Paris", "a banana", "blue"], 0),
         ("Water freezes at zero degrees", ["Celsius", "Fahrenheit", "Kelvin"], 1),
         ("The opposite of hot is", ["cold", "warm", "a dog"], 0),
         ("One, two, three,", ["four", "seven", "ten"], 2)]


def test_task_accuracy_on_llamacpp_equals_one_from_llama_cpp_pythons_own_logits(tmp_path):
    """`lem run` with quality.task on the llamacpp backend: acc and acc_norm as computed here from each choice's
    summed log-probability (llama-cpp-python's logits_all rows, the split docs/method.md defines)."""
    import json

    from conftest import run_lem, write_yaml
    from llenergymeasure.models.embedded import _gguf_path

    (tmp_path / "mc.jsonl").write_text("".join(json.dumps({"question": q, "choices": c, "answer": a}) + "\n"
                                               for q, c, a in ITEMS), encoding="utf-8")
    cfg = write_yaml(tmp_path / "exp.yaml", """\
name: llamacpp-task
model: "embedded:SmolLM2-135M-Instruct"
backend: llamacpp
n_prompts: 2
max_output_tokens: 4
runner: local
energy: {baseline: {mode: "off"}}
quality: {task: {path: mc.jsonl}}
llamacpp: {n_threads: 2, n_threads_batch: 2}
""")
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "out"), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    task = json.loads((run / "result.json").read_text())["quality"]["task"]
    plain = library_llama(_gguf_path(), n_ctx=128)
    hits = hits_norm = 0
    for question, choices, answer in ITEMS:
        q = plain.tokenize(question.encode(), add_bos=False, special=True)
        lls = []
        for c in choices:
            whole = plain.tokenize((question + " " + c).encode(), add_bos=False, special=True)
            lp = library_logprobs(plain, whole[:-1])
            lls.append(sum(lp[i - 1, whole[i]] for i in range(len(q), len(whole))))
        hits += int(np.argmax(lls)) == answer
        hits_norm += int(np.argmax([ll / len(c) for ll, c in zip(lls, choices)])) == answer
    plain.close()
    assert task["scorer"] == "builtin" and task["n_items"] == len(ITEMS)
    assert task["accuracy"] == pytest.approx(hits / len(ITEMS))
    assert task["accuracy_norm"] == pytest.approx(hits_norm / len(ITEMS))
    print(f"\nllamacpp task accuracy {task['accuracy']:.2f}, acc_norm {task['accuracy_norm']:.2f} "
          f"({len(ITEMS)} items, {task['duration_s']:.2f} s)")
