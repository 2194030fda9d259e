"""The vLLM backend's pure mappings (config -> engine and sampling arguments, parameter counts), checked without vLLM.

The engine itself is exercised for real where vLLM is installed (see the vLLM CPU recipe in ENVIRONMENT.md).
"""

from __future__ import annotations

import json
import sys

import pytest
from conftest import make_config
from lem_runner.backends import InferenceBackend, create_backend
from lem_runner.backends.base import input_token_limit
from lem_runner.backends.checkpoint import checkpoint_parameter_counts, llama_like_parameter_counts
from lem_runner.backends.vllm.backend import CPU_EAGER_REASON, VLLMBackend, eager_mode, engine_args, sampling_args
from lem_runner.backends.vllm.config import VLLMConfig

#: every VLLMConfig field set away from its default, with the engine argument each must arrive as
NON_DEFAULT = {
    "max_model_len": 2048,
    "gpu_memory_utilization": 0.5,
    "max_num_seqs": 7,
    "max_num_batched_tokens": 4096,
    "tensor_parallel_size": 2,
    "pipeline_parallel_size": 2,
    "enforce_eager": True,
    "quantization": "fp8",
    "kv_cache_dtype": "fp8_e5m2",
    "enable_prefix_caching": True,
    "block_size": 32,
    "cpu_kvcache_space_gib": 3,
    "enable_chunked_prefill": False,
    "speculative_config": {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 4},
    "cpu_offload_gb": 2.5,
    "async_scheduling": True,
    "reasoning_parser": "deepseek_r1",
    "engine_args": {"max_logprobs": 5, "disable_sliding_window": True},
}
#: fields that are not engine arguments: the KV cache size on CPU goes through VLLM_CPU_KVCACHE_SPACE; the
#: reasoning parser is the OpenAI server's flag (backends/vllm/server.py); the pass-through's keys arrive as themselves
NOT_ENGINE_ARGS = {"cpu_kvcache_space_gib", "reasoning_parser", "engine_args"}


def _vllm_config(**overrides):
    return make_config(backend="vllm", **overrides)


# --- engine arguments --------------------------------------------------------------------------------------------


def test_the_table_covers_every_vllm_field():
    # A field added to VLLMConfig must be added here too, and so be checked for a mapping below.
    assert set(NON_DEFAULT) == set(VLLMConfig.model_fields)
    assert all(NON_DEFAULT[k] != f.default for k, f in VLLMConfig.model_fields.items())


def test_every_vllm_field_reaches_its_engine_argument():
    # serving: reasoning_parser is refused offline (the server's flag)
    cfg = _vllm_config(vllm=NON_DEFAULT, devices=[0, 1, 2, 3], dtype="bfloat16", seed=7, scenario="serving",
                       serving={"rate": 2.0})
    args = engine_args(cfg, "/models/m")
    for field, value in NON_DEFAULT.items():
        if field in NOT_ENGINE_ARGS:
            assert field not in args
        else:
            assert args[field] == value, field
    assert args["model"] == "/models/m"
    assert args["dtype"] == "bfloat16"
    assert args["seed"] == 7
    assert args["max_logprobs"] == 5 and args["disable_sliding_window"] is True
    assert set(args) == {"model", "dtype", "seed"} | (set(NON_DEFAULT) - NOT_ENGINE_ARGS) | set(
        NON_DEFAULT["engine_args"])


def test_fields_left_at_none_are_omitted_so_vllm_keeps_its_defaults():
    args = engine_args(_vllm_config(), "/models/m")
    for field in ("max_model_len", "max_num_seqs", "max_num_batched_tokens", "quantization", "block_size"):
        assert field not in args
    assert None not in args.values()
    assert args["gpu_memory_utilization"] == 0.9 and args["kv_cache_dtype"] == "auto"
    assert args["enable_prefix_caching"] is False  # the contract's default, not vLLM's (on)
    assert args["tensor_parallel_size"] == 1 and args["pipeline_parallel_size"] == 1
    assert "enforce_eager" not in args  # on a GPU, vLLM's own default (compiled, CUDA graphs)


def test_unset_enforce_eager_is_eager_on_cpu_and_says_why():
    # the CPU image has no C++ compiler: vLLM's compiled path would kill its worker (InvalidCxxCompiler)
    cfg = _vllm_config()
    assert engine_args(cfg, "/m", on_cuda=False)["enforce_eager"] is True
    assert eager_mode(cfg, on_cuda=False) == (True, CPU_EAGER_REASON)
    assert "C++ compiler" in CPU_EAGER_REASON


@pytest.mark.parametrize("on_cuda", [True, False])
@pytest.mark.parametrize("chosen", [True, False])
def test_an_explicit_enforce_eager_is_passed_as_written_on_either_device(chosen, on_cuda):
    cfg = _vllm_config(vllm={"enforce_eager": chosen})
    assert engine_args(cfg, "/m", on_cuda=on_cuda)["enforce_eager"] is chosen
    assert eager_mode(cfg, on_cuda)[1] == "vllm.enforce_eager as configured"


@pytest.mark.parametrize("dtype", ["auto", "float32", "float16", "bfloat16"])
def test_dtype_is_passed_as_written(dtype):
    assert engine_args(_vllm_config(dtype=dtype), "/m")["dtype"] == dtype


def test_the_experiment_seed_seeds_the_engine():
    assert engine_args(_vllm_config(seed=123), "/m")["seed"] == 123
    assert engine_args(_vllm_config(), "/m")["seed"] == 42


# --- sampling arguments ------------------------------------------------------------------------------------------


def test_greedy_is_temperature_zero_with_no_sampling_knobs():
    kw = sampling_args(_vllm_config(max_output_tokens=24))
    assert kw == {"max_tokens": 24, "temperature": 0.0, "detokenize": False}


def test_sampling_passes_temperature_top_p_top_k_and_the_seed():
    cfg = _vllm_config(seed=9, decoding={"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 40})
    kw = sampling_args(cfg)
    assert kw["temperature"] == 0.7 and kw["top_p"] == 0.9 and kw["top_k"] == 40 and kw["seed"] == 9
    assert "ignore_eos" not in kw and "min_tokens" not in kw


def test_force_output_length_ignores_eos_and_sets_min_tokens_to_max_tokens():
    kw = sampling_args(_vllm_config(max_output_tokens=16, force_output_length=True))
    assert kw["ignore_eos"] is True
    assert kw["min_tokens"] == kw["max_tokens"] == 16


def test_input_limit_is_the_synthetic_length_or_max_input_tokens():
    assert input_token_limit(_vllm_config(max_input_tokens=300)) == 300
    cfg = _vllm_config(max_input_tokens=300, prompts={"source": "synthetic", "input_tokens": 128})
    assert input_token_limit(cfg) == 128


# --- creating the backend ----------------------------------------------------------------------------------------


def test_creating_the_backend_does_not_import_vllm():
    already = "vllm" in sys.modules
    backend = create_backend(_vllm_config(), "/models/m")
    assert isinstance(backend, VLLMBackend) and isinstance(backend, InferenceBackend)
    assert backend.name == "vllm" and backend.batch_size is None
    backend.close()  # nothing loaded: must not need vLLM either
    if not already:
        assert "vllm" not in sys.modules


# --- parameter counts --------------------------------------------------------------------------------------------


def _hf_counts(model_dir):
    """Counts from the loaded transformers model, as the PyTorch backend takes them."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    return sum(p.numel() for p in model.parameters()), embed.numel(), head.numel(), head.data_ptr() == embed.data_ptr()


def test_checkpoint_and_formula_counts_match_the_loaded_model(tiny_model_path):
    from transformers import AutoConfig

    total, embed, head, tied = _hf_counts(tiny_model_path)
    assert not tied
    from_checkpoint = checkpoint_parameter_counts(tiny_model_path, tie_word_embeddings=False)
    from_formula = llama_like_parameter_counts(AutoConfig.from_pretrained(tiny_model_path))
    for counts in (from_checkpoint, from_formula):
        assert (counts.total, counts.input_embedding, counts.output_projection, counts.tied_embeddings) == (
            total, embed, head, False)


def test_tied_embeddings_are_counted_once(tmp_path):
    import torch
    from transformers import AutoConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    total, embed, head, tied = _hf_counts(tmp_path)
    assert tied
    from_checkpoint = checkpoint_parameter_counts(tmp_path, tie_word_embeddings=True)
    from_formula = llama_like_parameter_counts(AutoConfig.from_pretrained(tmp_path))
    for counts in (from_checkpoint, from_formula):
        assert (counts.total, counts.input_embedding, counts.output_projection, counts.tied_embeddings) == (
            total, embed, head, True)
        assert counts.non_embedding == total - embed


def test_a_folder_without_safetensors_has_no_checkpoint_counts(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    assert checkpoint_parameter_counts(tmp_path, tie_word_embeddings=False) is None


def test_a_stored_copy_of_a_tied_head_is_not_counted_twice(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"model.embed_tokens.weight": torch.zeros(10, 4), "model.layers.0.mlp.weight": torch.zeros(4, 4),
               "lm_head.weight": torch.zeros(10, 4)}, str(tmp_path / "model.safetensors"))
    tied = checkpoint_parameter_counts(tmp_path, tie_word_embeddings=True)
    untied = checkpoint_parameter_counts(tmp_path, tie_word_embeddings=False)
    assert (tied.total, tied.input_embedding, tied.output_projection, tied.tied_embeddings) == (56, 40, 40, True)
    assert (untied.total, untied.non_embedding, untied.compute) == (96, 16, 56)


def test_the_engines_first_scheduled_time_becomes_the_prefill_start_only_when_recorded():
    """vLLM's request stats (RequestOutput.metrics) give scheduled_ts on the engine core's monotonic clock; offline
    LLM turns them off (metrics None), and 0.0 means the event was not recorded: then the steps decide."""
    from types import SimpleNamespace

    from lem_runner.backends.vllm.backend import engine_scheduled_time

    assert engine_scheduled_time(SimpleNamespace(metrics=SimpleNamespace(scheduled_ts=12.5))) == 12.5
    assert engine_scheduled_time(SimpleNamespace(metrics=SimpleNamespace(scheduled_ts=0.0))) is None
    assert engine_scheduled_time(SimpleNamespace(metrics=None)) is None
    assert engine_scheduled_time(SimpleNamespace()) is None
