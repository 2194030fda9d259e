"""The pass-through rules and the pytorch mapping of engine settings, without loading a model.

The engine receiving each setting is shown for real in tests/integration/test_engine_settings.py (transformers) and
tests/docker/test_vllm_engine_settings.py (vLLM in its CPU image).
"""

from __future__ import annotations

import pytest
from conftest import make_config
from lem_runner.backends.pytorch.check import from_pretrained_keys, generation_config_keys, pytorch_problems
from lem_runner.backends.pytorch.config import OWNED_GENERATE, OWNED_MODEL, QUANTIZATION_METHODS, PyTorchConfig
from lem_runner.backends.pytorch.settings import generate_kwargs, load_kwargs
from lem_runner.backends.vllm.config import OWNED_VLLM
from lem_runner.contract.engine_args import jsonable, unknown_keys
from pydantic import ValidationError


def test_an_unknown_key_is_one_line_with_close_names():
    assert unknown_keys("vllm.engine_args", ["max_num_seq", "enable_chunked_prefill"],
                        {"max_num_seqs", "enable_chunked_prefill"}, "vLLM 0.32.0's EngineArgs") == [
        "vllm.engine_args.max_num_seq: not an argument of vLLM 0.32.0's EngineArgs; did you mean 'max_num_seqs'?"]
    assert unknown_keys("x", ["zzz"], {"abc"}, "E") == ["x.zzz: not an argument of E"]


@pytest.mark.parametrize(("section", "key", "field"), [
    ("pytorch", "generate_kwargs", "max_new_tokens"), ("pytorch", "generate_kwargs", "repetition_penalty"),
    ("pytorch", "model_kwargs", "torch_dtype"), ("vllm", "engine_args", "max_num_seqs"),
    ("vllm", "engine_args", "speculative_config"),
])
def test_a_pass_through_key_that_lem_declares_is_refused(section, key, field):
    with pytest.raises(ValidationError, match=rf"{section}.{key}\n.*{field}: not a pass-through key"):
        make_config(backend=section, **{section: {key: {field: 1}}})


def test_owned_generate_and_model_keys_are_real_transformers_arguments():
    # a stale table would refuse nothing (or refuse a name transformers dropped): each key must exist upstream
    assert set(OWNED_GENERATE) <= generation_config_keys()
    assert set(OWNED_MODEL) - {"config", "state_dict"} <= from_pretrained_keys()


def test_decoding_knobs_map_onto_generate():
    cfg = make_config(decoding={"do_sample": True, "min_p": 0.05, "repetition_penalty": 1.3}, max_output_tokens=9)
    kw = generate_kwargs(cfg, pad_token_id=0)
    assert (kw["min_p"], kw["repetition_penalty"], kw["max_new_tokens"], kw["do_sample"]) == (0.05, 1.3, 9, True)
    greedy = generate_kwargs(make_config(decoding={"repetition_penalty": 1.3}), pad_token_id=0)
    assert greedy["repetition_penalty"] == 1.3 and "min_p" not in greedy and greedy["do_sample"] is False
    assert "repetition_penalty" not in generate_kwargs(make_config(), pad_token_id=0)  # neutral: not passed


def test_min_p_needs_sampling():
    with pytest.raises(ValidationError, match="min_p need do_sample"):
        make_config(decoding={"min_p": 0.1})


def test_pytorch_settings_map_onto_from_pretrained_and_generate():
    cfg = make_config(pytorch={"cache_implementation": "static", "device_map": "auto", "attn_implementation": "sdpa",
                               "generate_kwargs": {"no_repeat_ngram_size": 2},
                               "model_kwargs": {"rms_norm_eps": 1e-5}})
    assert load_kwargs(cfg, "float32", "cpu") == {"dtype": "float32", "attn_implementation": "sdpa",
                                                  "device_map": "auto", "rms_norm_eps": 1e-5}
    kw = generate_kwargs(cfg, pad_token_id=0)
    assert kw["cache_implementation"] == "static" and kw["no_repeat_ngram_size"] == 2
    assert kw["disable_compile"] is True  # lem compiles only when torch_compile says so


def test_device_map_lets_pytorch_use_several_gpus():
    with pytest.raises(ValidationError, match="set pytorch.device_map"):
        make_config(device="cuda", devices=[0, 1])
    assert make_config(device="cuda", devices=[0, 1], pytorch={"device_map": "auto"}).devices == [0, 1]


def test_torch_compile_takes_a_bool_or_a_mode():
    assert PyTorchConfig(torch_compile=True).compile_mode == "default"
    assert PyTorchConfig(torch_compile="max-autotune").compile_mode == "max-autotune"
    assert PyTorchConfig().compile_mode is None
    with pytest.raises(ValidationError):
        PyTorchConfig(torch_compile="fastest")


def test_every_quantization_method_names_its_library():
    from typing import get_args

    from lem_runner.backends.pytorch.config import Quantization

    assert set(get_args(Quantization)) == set(QUANTIZATION_METHODS)
    assert {lib for lib, _ in QUANTIZATION_METHODS.values()} == {"bitsandbytes", "torchao"}


def test_synthetic_weights_refuse_load_time_settings():
    cfg = make_config(synthetic_weights=True, pytorch={"model_kwargs": {"output_attentions": False}})
    assert pytorch_problems(cfg) == ["pytorch.model_kwargs: applies to from_pretrained, but synthetic_weights builds "
                                     "the model from its config (from_config); drop one of them"]


def test_the_vllm_table_names_real_vllm_fields():
    from lem_runner.backends.vllm.config import VLLMConfig

    declared = {f"vllm.{f}" for f in VLLMConfig.model_fields}
    assert {v for v in OWNED_VLLM.values() if v.startswith("vllm.")} <= declared


def test_jsonable_keeps_structure_and_stringifies_objects():
    import enum

    class Method(str, enum.Enum):  # noqa: UP042  the shape of transformers.QuantizationMethod
        TORCHAO = "torchao"

    class Opaque:
        def __str__(self):
            return "opaque"

    assert jsonable({"a": (1, 2.5), "b": {"c": None}, "d": Method.TORCHAO, "e": Opaque()}) == {
        "a": [1, 2.5], "b": {"c": None}, "d": "torchao", "e": "opaque"}
