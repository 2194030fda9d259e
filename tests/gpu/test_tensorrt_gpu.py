"""On a GPU host with TensorRT-LLM (the nvcr.io/nvidia/tensorrt-llm/release:1.2.1 image): the TensorRT backend for
real, on the tiny Llama (`make test-gpu`, or `pytest -m gpu tests/gpu/test_tensorrt_gpu.py` inside that image with
this project installed). Nothing here has run where it was written: TensorRT-LLM cannot be installed there."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from conftest import make_config
from lem_runner.backends.base import InferenceBackend
from lem_runner.contract.protocol import RunRequest, parse_event
from lem_runner.contract.result import ExperimentResult

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(importlib.util.find_spec("tensorrt_llm") is None,
                       reason="tensorrt_llm is not installed (run inside the TensorRT-LLM release image)"),
]

PROMPTS = ["the", "the quick brown fox jumps over the lazy dog", "energy per token is measured in joules"]
MAX_OUT = 8
#: a small KV-cache share, so the in-process engine and the runner subprocess both fit on one GPU
KV_FRACTION = 0.2


def _config(model_path, **overrides):
    fields = {"model": str(model_path), "backend": "tensorrt", "device": "cuda", "force_output_length": True,
              "max_output_tokens": MAX_OUT, "tensorrt": {"kv_cache_free_gpu_memory_fraction": KV_FRACTION}}
    return make_config(**{**fields, **overrides})


@pytest.fixture(scope="module")
def backend(tiny_model_path):
    from lem_runner.backends.tensorrt.backend import TensorRTBackend

    backend = TensorRTBackend(_config(tiny_model_path), str(tiny_model_path))
    try:
        backend.loaded = backend.load()
        yield backend
    finally:
        backend.close()


def test_load_reports_cuda_the_workflow_and_the_checkpoint_counts(backend, tiny_model_path):
    import json

    assert isinstance(backend, InferenceBackend)
    loaded = backend.loaded
    assert loaded.device_kind == "cuda" and loaded.cuda_version
    assert "tensorrt-llm" in loaded.libraries and "torch" in loaded.libraries
    assert loaded.details["llm_class"] == "tensorrt_llm.LLM"
    assert loaded.details["tensorrt_llm_version"].startswith("1.")
    assert loaded.details["kv_cache_free_gpu_memory_fraction"] == pytest.approx(KV_FRACTION)
    cfg = json.loads((tiny_model_path / "config.json").read_text())
    v, h, i, n = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    assert loaded.parameters.total == v * h + n * (4 * h * h + 3 * h * i + 2 * h) + h + v * h
    assert loaded.details["parameter_source"] == "checkpoint safetensors headers"


def test_generate_streams_every_token_of_every_request(backend, tiny_model_path):
    from transformers import AutoTokenizer

    records = backend.generate(PROMPTS)
    assert len(records) == len(PROMPTS)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    assert [r.input_tokens for r in records] == [len(tokenizer(p)["input_ids"]) for p in PROMPTS]
    for r in records:
        assert r.output_tokens == MAX_OUT == len(r.token_times)  # ignore_eos + min_tokens: exactly max_tokens
        assert r.token_times[0] > r.start
        assert all(a <= b for a, b in zip(r.token_times, r.token_times[1:]))
        # stream_interval 1: one response per iteration, so each token has its own arrival time
        assert len(set(r.token_times)) == MAX_OUT
    assert len({r.start for r in records}) == 1  # submitted together


def test_engine_workflow_builds_and_streams_exact_lengths(tiny_model_path):
    """``llm_backend: tensorrt``: ``tensorrt_llm._tensorrt_engine.LLM`` builds an engine (max_input_len from the
    config) and streams the same way."""
    from lem_runner.backends.tensorrt.backend import TensorRTBackend

    config = _config(tiny_model_path, max_input_tokens=64,
                     tensorrt={"llm_backend": "tensorrt", "kv_cache_free_gpu_memory_fraction": KV_FRACTION})
    engine = TensorRTBackend(config, str(tiny_model_path))
    try:
        loaded = engine.load()
        assert loaded.details["llm_class"] == "tensorrt_llm._tensorrt_engine.LLM"
        records = engine.generate(PROMPTS)
    finally:
        engine.close()
    assert [r.output_tokens for r in records] == [MAX_OUT] * len(PROMPTS)
    assert all(len(r.token_times) == MAX_OUT and r.token_times[0] > r.start for r in records)


def test_runner_process_measures_tensorrt_with_nvml_energy(tiny_model_path, tmp_path, monkeypatch):
    """End to end: ``python -m lem_runner`` with the tensorrt backend leaves a result with counter energy, one TTFT
    per request and one ITL per token gap."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = 16
    config = _config(tiny_model_path, n_prompts=n, max_output_tokens=32, warmup={"n_batches": 1},
                     energy={"sampler": "nvml"})
    request = RunRequest(experiment_id="trt-e2e", config=config, model_path=str(tiny_model_path))
    (tmp_path / "request.json").write_text(request.model_dump_json(), encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "lem_runner", "--config", str(tmp_path / "request.json"),
                           "--out", str(out)], capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    events = [parse_event(line) for line in proc.stdout.splitlines()]
    assert all(events) and events[0].event == "started" and events[-1].event == "done"
    result = ExperimentResult.model_validate_json((out / "result.json").read_text(encoding="utf-8"))
    assert (result.whole_run.n_requests, result.output_tokens) == (n, n * 32)
    assert result.ttft.n == n and result.itl.n == n * (32 - 1)
    assert result.energy.source == "nvml_counter"
    assert result.total_energy_j is not None and result.total_energy_j > 0
    assert result.backend_details["llm_backend"] == "pytorch"
    assert result.environment.libraries.get("tensorrt-llm", "").startswith("1.")


def test_fake_llm_arg_names_are_real():
    # pairs tests/fakes.py's FAKE_TORCH_LLM_ARG_NAMES (the unit tests' stand-in) with the installed TensorRT-LLM
    from fakes import FAKE_TORCH_LLM_ARG_NAMES
    from lem_runner.backends.tensorrt.check import llm_arg_names

    assert FAKE_TORCH_LLM_ARG_NAMES <= llm_arg_names("pytorch")


def test_an_unknown_engine_arg_is_refused_before_the_engine_starts(tiny_model_path):
    from lem_runner.backends.tensorrt.backend import TensorRTBackend
    from lem_runner.contract.engine_args import EngineArgumentError

    cfg = _config(tiny_model_path, tensorrt={"engine_args": {"no_such_argument": 1}})
    with pytest.raises(EngineArgumentError, match=r"tensorrt.engine_args.no_such_argument: not an argument of "):
        TensorRTBackend(cfg, str(tiny_model_path)).load()
