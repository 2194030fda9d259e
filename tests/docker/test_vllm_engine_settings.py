"""vLLM's own settings for real, in its CPU image: declared fields and engine_args reach the engine (read back from
its config objects into result.json's engine_settings), and an engine_args key vLLM 0.32's EngineArgs does not have
is refused by the runner before the engine starts: exit 2, one line naming it (the host has no vLLM to check it)."""

from __future__ import annotations

import json

import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import RunError

pytestmark = pytest.mark.docker


def _config(tmp_path, model, vllm: str):
    return write_yaml(tmp_path / "v.yaml", f"""\
model: {model}
backend: vllm
n_prompts: 4
max_output_tokens: 4
force_output_length: true
warmup: {{n_batches: 0}}
decoding: {{repetition_penalty: 1.2}}
vllm:
{vllm}""")


def test_declared_settings_and_engine_args_reach_vllm_and_are_read_back(tmp_path, tiny_model_path, vllm_cpu_image):
    cfg = _config(tmp_path, tiny_model_path, """\
  enable_chunked_prefill: false
  max_num_batched_tokens: 1024
  engine_args: {max_logprobs: 7, long_prefill_token_threshold: 64}
""")
    out = tmp_path / "r"
    proc = run_lem("run", str(cfg), "-o", str(out), "--isolated", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (exp,) = out.iterdir()
    settings = json.loads((exp / "result.json").read_text())["engine_settings"]
    assert settings["arguments"]["max_logprobs"] == 7 and settings["arguments"]["enable_chunked_prefill"] is False
    resolved = settings["resolved"]
    # read back from the engine's ModelConfig / SchedulerConfig, not echoed from the request
    assert resolved["max_logprobs"] == 7
    assert resolved["enable_chunked_prefill"] is False
    assert resolved["max_num_batched_tokens"] == 1024
    assert resolved["long_prefill_token_threshold"] == 64
    assert resolved["speculative_config"] is None and resolved["cpu_offload_gb"] == 0


def test_an_engine_arg_vllm_lacks_exits_2_naming_it(tmp_path, tiny_model_path, vllm_cpu_image):
    cfg = _config(tmp_path, tiny_model_path, "  engine_args: {max_num_seq: 4}\n")
    assert run_lem("config", "validate", str(cfg)).returncode == 0  # no vLLM on the host: the runner checks it
    out = tmp_path / "r"
    proc = run_lem("run", str(cfg), "-o", str(out), "--isolated", timeout=600)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "vllm.engine_args.max_num_seq: not an argument of vLLM 0.32.0's EngineArgs; did you mean 'max_num_seqs'" \
        in lines[0]
    (exp,) = out.iterdir()
    error = RunError.model_validate_json((exp / "error.json").read_text())
    assert error.phase == "config" and error.error_type == "EngineArgumentError"
