"""The server commands at their boundary: vLLM's OpenAI server and trtllm-serve get the engine arguments of their
config sections under their documented flag names (trtllm-serve cannot run here: its real run needs a GPU image)."""

from __future__ import annotations

from lem_runner.contract import ExperimentConfig
from lem_runner.serving.servers import server_command


def _flags(argv: list[str]) -> dict[str, str | None]:
    out, i = {}, 0
    while i < len(argv):
        if argv[i].startswith("--"):
            has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            out[argv[i]] = argv[i + 1] if has_value else None
            i += 2 if has_value else 1
        else:
            i += 1
    return out


def test_vllm_server_takes_the_vllm_section_and_is_eager_on_cpu():
    cfg = ExperimentConfig(backend="vllm", scenario="serving", serving={"rate": 1}, dtype="float32", max_input_tokens=128,
                           vllm={"max_model_len": 256, "max_num_seqs": 4, "cpu_kvcache_space_gib": 2})
    cmd = server_command(cfg, "/m", 8123, on_cpu=True)
    assert cmd.argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    f = _flags(cmd.argv)
    assert f["--model"] == "/m" and f["--port"] == "8123" and f["--host"] == "127.0.0.1"
    assert f["--max-model-len"] == "256" and f["--max-num-seqs"] == "4" and f["--dtype"] == "float32"
    assert "--enforce-eager" in f and "--no-enable-prefix-caching" in f
    # the offline engine's CPU environment (one helper): dynamo off for an eager engine, said in the details
    assert cmd.env == {"VLLM_CPU_KVCACHE_SPACE": "2", "TORCHDYNAMO_DISABLE": "1"}
    assert cmd.details["torchdynamo_disable"] == "1" and "C++ compiler" in cmd.details["torchdynamo_disable_reason"]
    assert cmd.details["cpu_kvcache_space_gib"] == 2
    compiled = ExperimentConfig(**{**cfg.model_dump(exclude_unset=True), "vllm": {"max_model_len": 256,
                                                                                  "enforce_eager": False}})
    cpu_compiled = server_command(compiled, "/m", 8123, on_cpu=True)
    assert "--enforce-eager" not in cpu_compiled.argv and "TORCHDYNAMO_DISABLE" not in cpu_compiled.env
    assert cpu_compiled.details["torchdynamo_disable"] is None
    gpu = server_command(cfg, "/m", 8123, on_cpu=False)
    assert "--enforce-eager" not in gpu.argv and gpu.env == {}


def test_vllm_server_takes_booleans_as_flags_and_nested_settings_as_json():
    import json

    cfg = ExperimentConfig(backend="vllm", scenario="serving", serving={"rate": 1},
                           vllm={"enable_chunked_prefill": False, "async_scheduling": True,
                                 "speculative_config": {"method": "ngram", "num_speculative_tokens": 2},
                                 "engine_args": {"max_logprobs": 3}})
    f = _flags(server_command(cfg, "/m", 8123, on_cpu=True).argv)
    assert "--no-enable-chunked-prefill" in f and "--async-scheduling" in f and f["--async-scheduling"] is None
    assert json.loads(f["--speculative-config"]) == {"method": "ngram", "num_speculative_tokens": 2}
    assert f["--max-logprobs"] == "3"


def test_vllm_reasoning_parser_starts_the_parser_and_moves_the_client_to_the_chat_route():
    import pytest
    from pydantic import ValidationError

    cfg = ExperimentConfig(backend="vllm", scenario="serving", serving={"rate": 1},
                           vllm={"reasoning_parser": "deepseek_r1"})
    cmd = server_command(cfg, "/m", 8123, on_cpu=True)
    assert _flags(cmd.argv)["--reasoning-parser"] == "deepseek_r1" and cmd.chat_route
    plain = server_command(ExperimentConfig(backend="vllm", scenario="serving", serving={"rate": 1}), "/m", 8123, True)
    assert "--reasoning-parser" not in plain.argv and not plain.chat_route
    # the chat route takes text: offline, token-id prompts, a user's endpoint and the pass-through are refused
    for bad, words in [({"scenario": "offline", "serving": {}}, "only for scenario serving"),
                       ({"serving": {"rate": 1, "input_tokens": {"value": 8}}}, "exact serving.input_tokens"),
                       ({"serving": {"rate": 1, "endpoint": "http://127.0.0.1:8000/v1"}}, "serving.endpoint"),
                       ({"vllm": {"engine_args": {"reasoning_parser": "qwen3"}}}, "vllm.reasoning_parser")]:
        fields = {"backend": "vllm", "scenario": "serving", "serving": {"rate": 1},
                  "vllm": {"reasoning_parser": "deepseek_r1"}, **bad}
        with pytest.raises(ValidationError, match=words.replace(".", r"\.")):
            ExperimentConfig(**fields)


def test_trtllm_serve_is_the_pytorch_workflow_with_the_tensorrt_section():
    cfg = ExperimentConfig(backend="tensorrt", scenario="serving", serving={"rate": 1}, device="cuda",
                           tensorrt={"max_batch_size": 16, "max_seq_len": 1024, "kv_cache_free_gpu_memory_fraction": 0.5})
    cmd = server_command(cfg, "/m", 9000, on_cpu=False)
    assert cmd.argv[:3] == ["trtllm-serve", "serve", "/m"] and cmd.health_path == "/health"
    f = _flags(cmd.argv)
    assert f["--backend"] == "pytorch" and f["--port"] == "9000" and f["--max_batch_size"] == "16"
    assert f["--max_seq_len"] == "1024" and f["--kv_cache_free_gpu_memory_fraction"] == "0.5"
    assert "--max_num_tokens" not in f


def test_pytorch_server_batches_32_unless_batch_size_is_given():
    base = {"scenario": "serving", "serving": {"rate": 1}}
    assert _flags(server_command(ExperimentConfig(**base), "/m", 1, True).argv)["--max-batch"] == "32"
    cfg = ExperimentConfig(**base, pytorch={"batch_size": 4})
    assert _flags(server_command(cfg, "/m", 1, True).argv)["--max-batch"] == "4"


def test_each_server_reports_the_batch_cap_it_was_started_with():
    base = {"scenario": "serving", "serving": {"rate": 1}}
    assert server_command(ExperimentConfig(**base), "/m", 1, True).batch_size == 32
    assert server_command(ExperimentConfig(**base, pytorch={"batch_size": 4}), "/m", 1, True).batch_size == 4
    vllm = ExperimentConfig(**base, backend="vllm", vllm={"max_num_seqs": 6})
    assert server_command(vllm, "/m", 1, True).batch_size == 6
    assert server_command(ExperimentConfig(**base, backend="vllm"), "/m", 1, True).batch_size is None  # its default
    trt = ExperimentConfig(**base, backend="tensorrt", device="cuda", tensorrt={"max_batch_size": 16})
    assert server_command(trt, "/m", 1, False).batch_size == 16


def test_an_unknown_reasoning_parser_is_refused_naming_those_the_engine_has():
    from lem_runner.backends.vllm.check import reasoning_parser_problem

    names = {"deepseek_r1", "qwen3"}  # vLLM 0.32 registers 38, these among them
    (line,) = reasoning_parser_problem("deepseek-r1", names, "0.32.0")
    assert line.startswith("vllm.reasoning_parser: 'deepseek-r1' is not a reasoning parser of vLLM 0.32.0")
    assert "deepseek_r1, qwen3" in line
    assert reasoning_parser_problem("qwen3", names, "0.32.0") == [] and reasoning_parser_problem(None, names, "x") == []
