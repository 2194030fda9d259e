"""The pytorch backend's engine settings for real: the tiny Llama, the real transformers, the real runner and CLI.

Each declared setting or pass-through key is shown to reach the engine (the tokens change the way the setting says,
or the engine reports back what it built), to be recorded in result.json's ``engine_settings``, and a key the
engine does not define to exit 2 naming it, both in `lem config validate` and `lem run` and in the runner itself.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import make_config, run_lem, write_yaml
from lem_runner.backends.pytorch.backend import PyTorchBackend
from lem_runner.contract.engine_args import CONFIG_PHASE
from lem_runner.contract.protocol import EXIT_BAD_REQUEST, RunError, RunRequest

PROMPTS = ["the quick brown fox", "energy per token is", "batches of prompts are padded"]
MAX_OUT = 24


def _tokens(tiny_model_path, **overrides) -> list[list[int]]:
    """The new token ids the backend's own generate arguments produce for PROMPTS (greedy unless overridden)."""
    import torch

    cfg = make_config(model=str(tiny_model_path), device="cpu", max_output_tokens=MAX_OUT, force_output_length=True,
                      **overrides)
    backend = PyTorchBackend(cfg, str(tiny_model_path))
    backend.load()
    try:
        enc = backend._tokenizer(PROMPTS, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = backend._model.generate(**enc, **backend._generate_kwargs())
        return out[:, enc["input_ids"].shape[1]:].tolist()
    finally:
        backend.close()


@pytest.fixture(scope="module")
def greedy(tiny_model_path):
    return _tokens(tiny_model_path)


def test_greedy_output_of_the_random_model_repeats_tokens(greedy):
    # the premise of the next two tests: plain greedy on this model loops, so a penalty has something to change
    assert any(len(set(row)) < len(row) for row in greedy)


def test_generate_kwargs_reach_generate(tiny_model_path, greedy):
    # no_repeat_ngram_size 1: no token may occur twice in a row's prompt + output (checked from the tokens)
    rows = _tokens(tiny_model_path, pytorch={"generate_kwargs": {"no_repeat_ngram_size": 1}})
    assert rows != greedy
    assert all(len(set(row)) == len(row) for row in rows)


def test_repetition_penalty_changes_greedy_tokens(tiny_model_path, greedy):
    rows = _tokens(tiny_model_path, decoding={"repetition_penalty": 5.0})
    assert rows != greedy
    # the penalty discourages reuse: fewer repeated tokens than plain greedy, summed over the rows
    assert sum(len(r) - len(set(r)) for r in rows) < sum(len(r) - len(set(r)) for r in greedy)


def test_static_cache_gives_the_same_greedy_tokens(tiny_model_path, greedy):
    # a cache class changes memory layout, not the arithmetic: greedy tokens stay identical
    assert _tokens(tiny_model_path, pytorch={"cache_implementation": "static"}) == greedy


def _config_file(tmp_path, tiny_model_path, pytorch: str) -> object:
    return write_yaml(tmp_path / "settings.yaml", f"""\
name: settings
model: {tiny_model_path}
device: cpu
n_prompts: 4
max_output_tokens: 6
force_output_length: true
warmup: {{n_batches: 1}}
pytorch:
  batch_size: 2
{pytorch}""")


def _only_result(out):
    [exp_dir] = [p for p in out.iterdir() if p.is_dir()]
    return json.loads((exp_dir / "result.json").read_text())


def test_lem_run_records_what_the_engine_used(tmp_path, tiny_model_path):
    cfg = _config_file(tmp_path, tiny_model_path, """\
  cache_implementation: static
  generate_kwargs: {no_repeat_ngram_size: 3}
""")
    out = tmp_path / "results"
    proc = run_lem("run", str(cfg), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    settings = _only_result(out)["engine_settings"]
    assert settings["kv_cache_class"] == "StaticCache"  # what generate built, seen in the model's first forward
    assert settings["generate"]["cache_implementation"] == "static"
    assert settings["generate"]["no_repeat_ngram_size"] == 3
    assert settings["generate"]["disable_compile"] is True and settings["torch_compile"] is False
    assert settings["model_dtype"] == "float32"


def test_default_run_records_the_dynamic_cache(tmp_path, tiny_model_path):
    out = tmp_path / "results"
    proc = run_lem("run", str(_config_file(tmp_path, tiny_model_path, "")), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert _only_result(out)["engine_settings"]["kv_cache_class"] == "DynamicCache"


def test_torch_compile_wraps_the_forward_in_dynamo(tiny_model_path):
    # the cheap half: the loaded model's forward is torch.compile's wrapper (compiling itself happens on first call,
    # minutes on a 2-core CPU: test_torch_compile_compiles_the_forward runs it)
    cfg = make_config(model=str(tiny_model_path), device="cpu", pytorch={"torch_compile": "reduce-overhead"})
    backend = PyTorchBackend(cfg, str(tiny_model_path))
    loaded = backend.load()
    try:
        assert hasattr(backend._model.forward, "_torchdynamo_orig_callable")
        assert loaded.engine_settings["torch_compile"] == "reduce-overhead"
    finally:
        backend.close()


@pytest.mark.slow
def test_torch_compile_compiles_the_forward(tmp_path, tiny_model_path):
    # inductor on CPU needs the C++ compiler the host has (the images do not); the graph count comes from dynamo.
    # Measured: 10 min on the shared 2-core CI machine (inductor builds C++ for each graph), hence slow.
    cfg = _config_file(tmp_path, tiny_model_path, "  torch_compile: true\n  cache_implementation: static\n")
    out = tmp_path / "results"
    proc = run_lem("run", str(cfg), "-o", str(out), timeout=900)
    assert proc.returncode == 0, proc.stderr
    settings = _only_result(out)["engine_settings"]
    assert settings["torch_compile"] == "default"
    assert settings["torch_compile_graphs"] >= 1


def _one_line_exit_2(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_generate_kwarg_exits_2_in_validate_and_run(tmp_path, tiny_model_path):
    cfg = _config_file(tmp_path, tiny_model_path, "  generate_kwargs: {no_repeat_ngram: 2}\n")
    needle = ("pytorch.generate_kwargs.no_repeat_ngram: not an argument of transformers", "GenerationConfig",
              "did you mean 'no_repeat_ngram_size'")
    _one_line_exit_2(run_lem("config", "validate", str(cfg)), *needle)
    out = tmp_path / "results"
    _one_line_exit_2(run_lem("run", str(cfg), "-o", str(out)), *needle)
    assert not out.exists()  # refused before any folder was made


def test_unknown_model_kwarg_and_a_penalty_transformers_lacks_exit_2(tmp_path, tiny_model_path):
    cfg = _config_file(tmp_path, tiny_model_path, "  model_kwargs: {rms_norm_eps: 1.0e-5, no_such_key: 1}\n")
    cfg.write_text(cfg.read_text() + "decoding: {presence_penalty: 0.5}\n")
    _one_line_exit_2(run_lem("config", "validate", str(cfg)), "pytorch.model_kwargs.no_such_key",
                     "decoding.presence_penalty: transformers")


def test_a_pass_through_key_lem_declares_is_refused(tmp_path, tiny_model_path):
    cfg = _config_file(tmp_path, tiny_model_path, "  generate_kwargs: {temperature: 0.5}\n")
    _one_line_exit_2(run_lem("config", "validate", str(cfg)), "pytorch.generate_kwargs",
                     "temperature: not a pass-through key; set 'decoding.temperature' instead")


def test_quantization_without_its_library_exits_2_with_the_reason(tmp_path, tiny_model_path):
    import importlib.util

    if importlib.util.find_spec("torchao") is not None:
        pytest.skip("torchao is installed here: the refusal has nothing to refuse")
    cfg = _config_file(tmp_path, tiny_model_path, "  quantization: torchao-int8-weight-only\n")
    cfg.write_text(cfg.read_text() + "runner: local\n")
    _one_line_exit_2(run_lem("config", "validate", str(cfg)), "pytorch.quantization 'torchao-int8-weight-only' "
                     "needs the torchao package")


def test_the_runner_refuses_an_unknown_key_before_loading_with_exit_2(tmp_path, tiny_model_path):
    # the runner's own check (what a container runs where the host lacks the engine): error.json phase config
    config = make_config(model=str(tiny_model_path), device="cpu",
                         pytorch={"generate_kwargs": {"no_such_setting": True}})
    request = RunRequest(experiment_id="refused", config=config, model_path=str(tiny_model_path))
    (tmp_path / "request.json").write_text(request.model_dump_json(), encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "lem_runner", "--config", str(tmp_path / "request.json"),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_BAD_REQUEST, proc.stderr[-2000:]
    error = RunError.model_validate_json((out / "error.json").read_text())
    assert error.phase == CONFIG_PHASE and error.error_type == "EngineArgumentError"
    assert error.message.startswith("pytorch.generate_kwargs.no_such_setting: not an argument of transformers")
    assert "model_loaded" not in proc.stdout  # nothing was loaded


def test_torchao_quantization_loads_int8_weights(tiny_model_path):
    # where torchao is installed (not in the default venv: run with it on PYTHONPATH); CPU int8 weight-only
    pytest.importorskip("torchao")
    cfg = make_config(model=str(tiny_model_path), device="cpu", max_output_tokens=4,
                      pytorch={"quantization": "torchao-int8-weight-only"})
    backend = PyTorchBackend(cfg, str(tiny_model_path))
    loaded = backend.load()
    try:
        weight = backend._model.model.layers[0].mlp.up_proj.weight
        assert "int8" in type(weight).__name__.lower()  # the linear layers hold torchao's int8 tensors
        assert loaded.engine_settings["quantization_config"]["quant_method"] == "torchao"
        assert [r.output_tokens for r in backend.generate(PROMPTS)] == [4, 4, 4]
    finally:
        backend.close()
