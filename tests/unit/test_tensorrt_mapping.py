"""The TensorRT-LLM backend at its boundary: config -> ``LLM(...)`` / ``SamplingParams`` arguments, device rules,
parameter counting and token timestamping, all without tensorrt_llm (which cannot be installed here)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from types import SimpleNamespace
from typing import get_args

import pytest
from conftest import make_config
from lem_runner.backends import InferenceBackend, create_backend
from lem_runner.backends.checkpoint import parameter_counts
from lem_runner.backends.tensorrt.backend import (
    LLM_CLASSES,
    QUANT_ALGOS,
    TensorRTBackend,
    device_problem,
    llm_args,
    llm_class,
    sampling_args,
    stream_token_times,
)
from lem_runner.backends.tensorrt.config import TensorRTConfig
from pydantic import ValidationError


def _trt(**overrides):
    """A valid tensorrt-backend config; ``tensorrt`` takes a dict of section fields."""
    return make_config(**{"backend": "tensorrt", "device": "cuda", **overrides})


# --- llm_args ------------------------------------------------------------------------------------------------------


def test_defaults_map_to_the_pytorch_workflow_and_omit_every_unset_field():
    assert llm_args(_trt(), "/models/m") == {
        "model": "/models/m",
        "dtype": "auto",
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 1,
        # block reuse is off unless asked for: warmup runs the same prompts, reuse would hide their prefill
        "kv_cache_config": {"free_gpu_memory_fraction": 0.9, "enable_block_reuse": False, "dtype": "auto"},
    }
    assert llm_class(_trt()) == ("tensorrt_llm", "LLM")


def test_every_field_set_on_the_pytorch_workflow():
    cfg = _trt(dtype="bfloat16", devices=[0, 1, 2, 3], tensorrt={
        "max_batch_size": 8, "max_num_tokens": 4096, "max_seq_len": 2048, "tensor_parallel_size": 2,
        "pipeline_parallel_size": 2, "kv_cache_dtype": "fp8", "kv_cache_free_gpu_memory_fraction": 0.5,
        "kv_cache_enable_block_reuse": False,
    })
    assert llm_args(cfg, "/m") == {
        "model": "/m",
        "dtype": "bfloat16",
        "tensor_parallel_size": 2,
        "pipeline_parallel_size": 2,
        "max_batch_size": 8,
        "max_num_tokens": 4096,
        "max_seq_len": 2048,
        "kv_cache_config": {"free_gpu_memory_fraction": 0.5, "enable_block_reuse": False, "dtype": "fp8"},
    }


@pytest.mark.parametrize("quantization, algo", sorted(QUANT_ALGOS.items()))
def test_engine_workflow_takes_quantization_as_a_quant_config(quantization, algo):
    cfg = _trt(max_input_tokens=300, tensorrt={"llm_backend": "tensorrt", "quantization": quantization})
    args = llm_args(cfg, "/m")
    assert args["quant_config"] == {"quant_algo": algo}
    assert args["max_input_len"] == 300
    assert llm_class(cfg) == ("tensorrt_llm._tensorrt_engine", "LLM")


def test_quant_algo_names_are_tensorrt_llm_members():
    # QuantAlgo members in tensorrt_llm/quantization/mode.py (1.x); the names are looked up with QuantAlgo[name]
    assert QUANT_ALGOS == {"fp8": "FP8", "int4_awq": "W4A16_AWQ", "w4a8_awq": "W4A8_AWQ",
                           "int8_sq": "W8A8_SQ_PER_CHANNEL", "nvfp4": "NVFP4"}
    literal, _none = get_args(TensorRTConfig.model_fields["quantization"].annotation)
    assert set(QUANT_ALGOS) == set(get_args(literal))  # every value the config accepts has a QuantAlgo


def test_fp8_kv_cache_goes_where_each_workflow_takes_it():
    torch_wf = llm_args(_trt(tensorrt={"kv_cache_dtype": "fp8"}), "/m")
    assert torch_wf["kv_cache_config"]["dtype"] == "fp8" and "quant_config" not in torch_wf
    # the engine workflow asserts kv_cache_config.dtype == "auto": FP8 KV cache is a QuantConfig field there
    engine_wf = llm_args(_trt(tensorrt={"llm_backend": "tensorrt", "kv_cache_dtype": "fp8"}), "/m")
    assert "dtype" not in engine_wf["kv_cache_config"]
    assert engine_wf["quant_config"] == {"kv_cache_quant_algo": "FP8"}
    both = llm_args(_trt(tensorrt={"llm_backend": "tensorrt", "kv_cache_dtype": "fp8", "quantization": "fp8"}), "/m")
    assert both["quant_config"] == {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"}


def test_engine_workflow_without_quantization_passes_no_quant_config():
    args = llm_args(_trt(tensorrt={"llm_backend": "tensorrt"}), "/m")
    assert "quant_config" not in args
    assert args["kv_cache_config"] == {"free_gpu_memory_fraction": 0.9, "enable_block_reuse": False}


def test_engine_input_limit_is_the_synthetic_prompt_length():
    cfg = _trt(prompts={"source": "synthetic", "input_tokens": 128}, tensorrt={"llm_backend": "tensorrt"})
    assert llm_args(cfg, "/m")["max_input_len"] == 128


def test_quantization_on_the_pytorch_workflow_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="llm_backend 'tensorrt'"):
        llm_args(_trt(tensorrt={"quantization": "fp8"}), "/m")


# Each TensorRTConfig field, a value other than its default, and a check that the value reached the arguments.
_FIELD_PROBES = {
    "llm_backend": ("tensorrt", lambda args, cfg: llm_class(cfg) == LLM_CLASSES["tensorrt"]),
    "max_batch_size": (7, lambda args, cfg: args["max_batch_size"] == 7),
    "max_num_tokens": (640, lambda args, cfg: args["max_num_tokens"] == 640),
    "max_seq_len": (900, lambda args, cfg: args["max_seq_len"] == 900),
    "tensor_parallel_size": (2, lambda args, cfg: args["tensor_parallel_size"] == 2),
    "pipeline_parallel_size": (2, lambda args, cfg: args["pipeline_parallel_size"] == 2),
    "quantization": ("int8_sq", lambda args, cfg: args["quant_config"]["quant_algo"] == "W8A8_SQ_PER_CHANNEL"),
    "kv_cache_dtype": ("fp8", lambda args, cfg: args["quant_config"]["kv_cache_quant_algo"] == "FP8"),
    "kv_cache_free_gpu_memory_fraction": (0.25,
                                          lambda args, cfg: args["kv_cache_config"]["free_gpu_memory_fraction"] == 0.25),
    "kv_cache_enable_block_reuse": (True, lambda args, cfg: args["kv_cache_config"]["enable_block_reuse"] is True),
    "engine_args": ({"max_beam_width": 2}, lambda args, cfg: args["max_beam_width"] == 2),
}


def test_every_tensorrt_config_field_is_mapped():
    assert set(_FIELD_PROBES) == set(TensorRTConfig.model_fields), "a TensorRTConfig field has no mapping here"
    for name, (value, reached) in _FIELD_PROBES.items():
        assert TensorRTConfig.model_fields[name].default != value
        section = {"llm_backend": "tensorrt", name: value}  # the engine workflow accepts every field
        devices = [0, 1] if name.endswith("parallel_size") else [0]
        cfg = _trt(devices=devices, tensorrt=section)
        assert reached(llm_args(cfg, "/m"), cfg), name


# --- sampling_args -------------------------------------------------------------------------------------------------


def test_greedy_gives_no_sampling_knob_and_no_seed():
    assert sampling_args(_trt(max_output_tokens=16)) == {"max_tokens": 16, "detokenize": False}


def test_sampling_gives_all_knobs_and_the_seed():
    cfg = _trt(seed=7, decoding={"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 40})
    assert sampling_args(cfg) == {"max_tokens": 8, "detokenize": False, "temperature": 0.7, "top_p": 0.9,
                                  "top_k": 40, "seed": 7}


def test_top_k_zero_is_passed_as_zero_meaning_all_logits():
    cfg = _trt(decoding={"do_sample": True, "temperature": 0.5})
    assert sampling_args(cfg)["top_k"] == 0


def test_force_output_length_ignores_eos_and_sets_min_tokens():
    kw = sampling_args(_trt(max_output_tokens=32, force_output_length=True))
    assert kw == {"max_tokens": 32, "detokenize": False, "ignore_eos": True, "min_tokens": 32}


# --- devices -------------------------------------------------------------------------------------------------------


def test_first_ordinals_are_accepted_in_any_order():
    assert device_problem(_trt()) is None
    assert device_problem(_trt(devices=[1, 0], tensorrt={"tensor_parallel_size": 2})) is None


def test_devices_tensorrt_llm_would_not_use_are_refused_by_name():
    problem = device_problem(_trt(devices=[2, 3], tensorrt={"tensor_parallel_size": 2}))
    assert problem is not None
    assert problem.startswith("devices:") and "[0, 1]" in problem and "[2, 3]" in problem
    assert "CUDA_VISIBLE_DEVICES" in problem
    assert device_problem(_trt(devices=[1])) is not None


# --- config validation (contract) ----------------------------------------------------------------------------------


def test_tensorrt_on_cpu_is_a_validation_error_naming_device():
    with pytest.raises(ValidationError) as info:
        make_config(backend="tensorrt", device="cpu")
    assert "device:" in str(info.value) and "'cpu'" in str(info.value)


def test_tensor_parallel_needs_as_many_devices():
    with pytest.raises(ValidationError) as info:
        make_config(backend="tensorrt", devices=[0], tensorrt={"tensor_parallel_size": 2})
    text = str(info.value)
    assert "devices:" in text and "= 2 GPU(s)" in text
    make_config(backend="tensorrt", devices=[0, 1], tensorrt={"tensor_parallel_size": 2})  # and 2 devices pass


# --- create_backend ------------------------------------------------------------------------------------------------


def test_create_backend_does_not_import_tensorrt_llm():
    before = {m for m in sys.modules if m.split(".")[0] == "tensorrt_llm"}
    backend = create_backend(_trt(), "/models/m")
    assert isinstance(backend, TensorRTBackend) and isinstance(backend, InferenceBackend)
    assert backend.name == "tensorrt" and backend.batch_size is None
    assert {m for m in sys.modules if m.split(".")[0] == "tensorrt_llm"} == before == set()
    backend.close()  # closing an unloaded backend is a no-op


# --- parameter counts ----------------------------------------------------------------------------------------------


def _llama_counts(model_dir):
    cfg = json.loads((model_dir / "config.json").read_text())
    v, h, i, n = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    per_layer = 4 * h * h + 3 * h * i + 2 * h  # q, k, v, o (4 heads x 64 = h); gate, up, down; two RMSNorms
    return v * h, v * h + n * per_layer + h + v * h


def test_parameter_counts_come_from_the_checkpoint(tiny_model_path):
    from transformers import AutoConfig

    counts, source = parameter_counts(tiny_model_path, AutoConfig.from_pretrained(tiny_model_path))
    embed, total = _llama_counts(tiny_model_path)
    assert source == "checkpoint safetensors headers"
    assert (counts.total, counts.input_embedding, counts.output_projection, counts.tied_embeddings) == (
        total, embed, embed, False)


def test_a_modelopt_checkpoint_is_counted_by_formula(tiny_model_path, tmp_path):
    from transformers import AutoConfig

    model_dir = tmp_path / "fp8"
    shutil.copytree(tiny_model_path, model_dir)
    (model_dir / "hf_quant_config.json").write_text('{"quantization": {"quant_algo": "FP8"}}')
    counts, source = parameter_counts(model_dir, AutoConfig.from_pretrained(model_dir))
    embed, total = _llama_counts(model_dir)
    assert source == "HF config, Llama-like dense formula"
    assert (counts.total, counts.input_embedding) == (total, embed)


# --- token timestamps ----------------------------------------------------------------------------------------------


def _stream(lengths):
    """An async stream of responses whose ``outputs[0].token_ids`` grows to the given lengths, as RequestOutput's."""

    async def gen():
        for n in lengths:
            yield SimpleNamespace(outputs=[SimpleNamespace(token_ids=list(range(n)))])

    return gen()


def _clock(*ticks):
    it = iter(ticks)
    return lambda: next(it)


def test_each_token_gets_the_time_its_response_arrived():
    times = asyncio.run(stream_token_times(_stream([1, 2, 3, 4]), _clock(1.0, 1.25, 1.5, 1.75)))
    assert times == [1.0, 1.25, 1.5, 1.75]


def test_tokens_arriving_together_share_a_time_and_empty_responses_add_none():
    times = asyncio.run(stream_token_times(_stream([1, 3, 3, 4]), _clock(1.0, 2.0, 3.0, 4.0)))
    assert times == [1.0, 2.0, 2.0, 4.0]


def test_a_shortened_final_response_drops_the_trimmed_tokens_times():
    times = asyncio.run(stream_token_times(_stream([1, 2, 3, 2]), _clock(1.0, 2.0, 3.0, 4.0)))
    assert times == [1.0, 2.0]


# --- engine_args pass-through and the sampling knobs ---------------------------------------------------------------


def test_engine_args_reach_llm_args_beside_the_declared_fields():
    args = llm_args(_trt(tensorrt={"max_batch_size": 4, "engine_args": {"enable_chunked_prefill": True}}), "/m")
    assert args["enable_chunked_prefill"] is True and args["max_batch_size"] == 4


def test_an_engine_arg_tensorrt_llm_lacks_is_one_line_naming_it():
    from fakes import FAKE_TORCH_LLM_ARG_NAMES
    from lem_runner.backends.tensorrt.check import engine_arg_problems

    cfg = _trt(tensorrt={"engine_args": {"enable_chunked_prefil": True, "cuda_graph_config": {"max_batch_size": 8}}})
    problems = engine_arg_problems(cfg, set(FAKE_TORCH_LLM_ARG_NAMES), "1.2.0")
    assert problems == ["tensorrt.engine_args.enable_chunked_prefil: not an argument of TensorRT-LLM 1.2.0's "
                        "TorchLlmArgs; did you mean 'enable_chunked_prefill'?"]


def test_an_engine_arg_lem_declares_is_refused_naming_the_field():
    with pytest.raises(ValidationError, match=r"max_batch_size: not a pass-through key; set 'tensorrt.max_batch_size'"):
        _trt(tensorrt={"engine_args": {"max_batch_size": 8}})


def test_penalties_apply_under_greedy_and_min_p_only_when_sampling():
    greedy = sampling_args(_trt(decoding={"repetition_penalty": 1.2, "presence_penalty": 0.5,
                                          "frequency_penalty": -0.5}))
    assert greedy == {"max_tokens": 8, "detokenize": False, "repetition_penalty": 1.2, "presence_penalty": 0.5,
                      "frequency_penalty": -0.5}
    sampled = sampling_args(_trt(decoding={"do_sample": True, "min_p": 0.1}))
    assert sampled["min_p"] == 0.1
    with pytest.raises(ValidationError, match="min_p need do_sample"):
        _trt(decoding={"min_p": 0.1})
