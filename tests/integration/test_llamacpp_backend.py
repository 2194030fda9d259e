"""The llamacpp backend for real: llama-cpp-python on the embedded SmolLM2 GGUF as it is (135M, Q4_1), through the
real CLI and runner subprocess; a pass-through key the installed Llama lacks refused before anything loads; a
serving run on llama-cpp-python's own server (input tokens exact: the library's own count). Skipped only where llama-cpp-python is not installed."""

from __future__ import annotations

import importlib.util
import json

import pyarrow.parquet as pq
import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult
from llamacpp_truth import library_prompt_tokens

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                reason="llama-cpp-python is not installed (make llamacpp builds and installs it)")

EMBEDDED = "embedded:SmolLM2-135M-Instruct"
#: SmolLM2-135M's non-embedding parameters, by hand from its shape (30 layers, hidden 576, MLP 1536, 9 query and 3
#: KV heads of 64): per layer q,o 576^2 + k,v 576x192 + MLP 3x576x1536 + two norms 576 = 3,540,096; x30 + final norm
SMOLLM2_NON_EMBEDDING = 30 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536 + 2 * 576) + 576


def _only_dir(root):
    (found,) = [p for p in root.iterdir() if p.is_dir()]
    return found


def test_lem_run_on_the_embedded_gguf_counts_every_token(tmp_path):
    # synthetic prompts of 16 tokens (each truncated to exactly 16 by the GGUF's tokenizer) and 8 forced output tokens
    cfg = write_yaml(tmp_path / "exp.yaml", """\
name: llamacpp
prompts: {source: synthetic, input_tokens: 16}
max_input_tokens: 16
max_output_tokens: 8
force_output_length: true
runner: local
llamacpp: {n_threads: 1, n_threads_batch: 1}
""")
    out = tmp_path / "results"
    proc = run_lem("run", str(cfg), "--model", EMBEDDED, "--backend", "llamacpp", "-n", "4", "-o", str(out),
                   timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = _only_dir(out)
    result = ExperimentResult.model_validate_json((run / "result.json").read_text())
    assert result.whole_run.n_requests == 4
    assert (result.whole_run.input_tokens, result.output_tokens) == (4 * 16, 4 * 8)
    assert result.ttft is not None and result.ttft.n == 4 and result.itl is not None and result.itl.n == 4 * 7
    assert "Llama.generate" in result.latency_method
    assert result.model_path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")  # the GGUF itself, not a conversion
    assert result.backend_details["dtype"] == "q4_1"
    assert result.engine_settings["arguments"]["n_ctx"] == 16 + 8  # sized from the lengths when unset
    assert result.engine_settings["resolved"]["n_threads"] == 1
    assert result.flops is not None and result.flops.active_non_embedding_parameters == SMOLLM2_NON_EMBEDDING
    # no readable energy counter here: null with the reason, never 0
    assert result.total_energy_j is None and result.energy.unavailable_reason
    assert "llama-cpp-python" in result.environment.libraries


CHAT = "<|im_start|>user\nWhat is 2+2? Answer with one number.<|im_end|>\n<|im_start|>assistant\n"


def _plain_greedy_length(limit: int) -> int:
    """The truth, from llama-cpp-python alone: greedy tokens for CHAT until its first end-of-generation token (counted)
    or ``limit``."""
    import llama_cpp
    from llenergymeasure.models.embedded import _gguf_path

    llm = llama_cpp.Llama(model_path=str(_gguf_path()), n_ctx=128, n_threads=1, verbose=False)
    n = 0
    for token in llm.generate(llm.tokenize(CHAT.encode(), add_bos=True, special=True), temp=0.0, top_k=0):
        n += 1
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) or n >= limit:
            break
    llm.close()
    return n


def test_an_early_end_token_is_counted_and_force_output_length_generates_past_it(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": CHAT}) + "\n", encoding="utf-8")
    expected = _plain_greedy_length(24)
    assert expected < 24  # the model answers and ends: the case to check
    counts = []
    for force in ("false", "true"):
        cfg = write_yaml(tmp_path / f"{force}.yaml", f"""\
model: "{EMBEDDED}"
backend: llamacpp
n_prompts: 1
prompts: {{source: jsonl, path: {prompts}}}
max_output_tokens: 24
force_output_length: {force}
warmup: {{n_batches: 0}}
runner: local
llamacpp: {{n_threads: 1, n_threads_batch: 1}}
""")
        proc = run_lem("run", str(cfg), "-o", str(tmp_path / force), timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        counts.append(ExperimentResult.model_validate_json(
            (_only_dir(tmp_path / force) / "result.json").read_text()).output_tokens)
    assert counts == [expected, 24]


def test_a_pass_through_key_the_installed_llama_lacks_exits_2_naming_it(tmp_path):
    cfg = write_yaml(tmp_path / "bad.yaml", f"""\
model: "{EMBEDDED}"
backend: llamacpp
llamacpp: {{llama_args: {{n_ctxx: 64, rope_freq_base: 10000.0}}}}
""")
    proc = run_lem("config", "validate", str(cfg))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert "llamacpp.llama_args.n_ctxx: not an argument of llama-cpp-python" in text and "rope_freq_base" not in text
    assert "Traceback" not in text


#: serving prompts of distinct lengths, one with a special token the tokenizer must parse as one
SERVING_PROMPTS = ["The river", "Light on the water over the stone bridge", "<|im_start|>user\nhello",
                   "A garden of numbers and a window of paper in winter, with a long story about music"]


def test_a_serving_run_on_llama_cpp_pythons_server_writes_every_request(tmp_path):
    prompts = tmp_path / "serve.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in SERVING_PROMPTS), encoding="utf-8")
    cfg = write_yaml(tmp_path / "serve.yaml", f"""\
name: serve-llamacpp
model: "{EMBEDDED}"
backend: llamacpp
scenario: serving
n_prompts: 4
prompts: {{source: jsonl, path: {prompts}}}
max_output_tokens: 6
force_output_length: true
runner: local
llamacpp: {{n_threads: 1, n_threads_batch: 1}}
serving:
  arrival: concurrency
  concurrency: 2
  n_requests: 4
  warmup_requests: 1
""")
    out = tmp_path / "out"
    proc = run_lem("run", str(cfg), "-o", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = _only_dir(out)
    rows = pq.read_table(run / "requests.parquet").to_pylist()
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    # min_tokens keeps the end token back, so each request streams exactly 6 tokens, one chunk each
    assert all(sum(r["chunk_tokens"]) == 6 and r["chunk_tokens"] == [1] * 6 for r in rows)
    assert all(r["submit_s"] <= r["first_token_s"] <= r["end_s"] for r in rows)
    result = ExperimentResult.model_validate_json((run / "result.json").read_text())
    assert result.output_tokens == 24 and result.serving.n_ok == 4
    # input tokens, from the usage chunk lem's middleware adds (the library's stream has none): each prompt's own
    truth = library_prompt_tokens(SERVING_PROMPTS)
    assert len(set(truth)) == 4 and sorted(r["input_tokens"] for r in rows) == sorted(truth), truth
    assert result.whole_run.input_tokens == sum(truth)
