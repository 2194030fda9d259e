"""The contract: config validation, the config hash and contract fingerprint, RunRequest, events, ExperimentResult."""

from __future__ import annotations

import json
import re

import pytest
from conftest import make_config, make_result
from lem_runner.contract import (
    ExperimentConfig,
    ExperimentResult,
    ProgressEvent,
    RunRequest,
    contract_fingerprint,
    measurement_config_hash,
    parse_event,
)
from pydantic import ValidationError

HEX16 = re.compile(r"^[0-9a-f]{16}$")


def _error_text(**overrides) -> str:
    with pytest.raises(ValidationError) as info:
        make_config(**overrides)
    return str(info.value)


# --- config validation -------------------------------------------------------------------------------------------


def test_defaults_are_valid_and_greedy():
    cfg = ExperimentConfig()
    assert cfg.decoding.do_sample is False
    assert cfg.devices == [0]
    assert cfg.prompts.source == "builtin"


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"n_promts": 4}, "n_promts"),
        ({"pytorch": {"batch_sizee": 4}}, "pytorch.batch_sizee"),
        ({"decoding": {"temprature": 0.5}}, "decoding.temprature"),
        ({"prompts": {"sorce": "builtin"}}, "prompts.sorce"),
    ],
)
def test_extra_keys_are_rejected_with_their_field_path(overrides, path):
    text = _error_text(**overrides)
    assert path in text
    assert "Extra inputs are not permitted" in text


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"n_prompts": "many"}, "n_prompts"),
        ({"n_prompts": 2.5}, "n_prompts"),
        ({"n_prompts": 0}, "n_prompts"),
        ({"pytorch": {"batch_size": "big"}}, "pytorch.batch_size"),
        ({"dtype": "float64"}, "dtype"),
        ({"backend": "vllm-nightly"}, "backend"),
        ({"devices": "zero"}, "devices"),
        ({"force_output_length": "sometimes"}, "force_output_length"),
    ],
)
def test_wrong_types_and_values_are_rejected_with_their_field_path(overrides, path):
    assert path in _error_text(**overrides)


def test_synthetic_prompts_need_input_tokens():
    assert "needs 'input_tokens'" in _error_text(prompts={"source": "synthetic"})
    assert make_config(prompts={"source": "synthetic", "input_tokens": 32}).prompts.input_tokens == 32


def test_synthetic_input_tokens_cannot_exceed_max_input_tokens():
    assert "exceeds max_input_tokens" in _error_text(prompts={"source": "synthetic", "input_tokens": 600},
                                                     max_input_tokens=512)


def test_jsonl_prompts_need_a_path_and_only_jsonl_takes_one():
    assert "needs 'path'" in _error_text(prompts={"source": "jsonl"})
    assert "only used with source 'jsonl'" in _error_text(prompts={"source": "builtin", "path": "p.jsonl"})
    assert make_config(prompts={"source": "jsonl", "path": "p.jsonl"}).prompts.path == "p.jsonl"


@pytest.mark.parametrize("knob", [{"temperature": 0.7}, {"top_p": 0.9}, {"top_k": 50}])
def test_greedy_decoding_rejects_sampling_knobs(knob):
    assert "do_sample" in _error_text(decoding=knob)
    assert make_config(decoding={"do_sample": True, **knob}).decoding.do_sample is True


@pytest.mark.parametrize("devices", [[0, 0], [-1], []])
def test_devices_must_be_distinct_non_negative_and_non_empty(devices):
    assert "devices" in _error_text(devices=devices)


def test_one_device_index_is_accepted():
    assert make_config(devices=[2]).devices == [2]


def test_pytorch_backend_takes_exactly_one_device():
    # energy is read on every listed device, so listing GPUs the backend does not use would count their idle power
    assert "devices" in _error_text(devices=[0, 1])


@pytest.mark.parametrize("runner", ["auto", "local", "docker", "docker:lem-pytorch:0.1"])
def test_valid_runner_forms(runner):
    assert make_config(runner=runner).runner == runner


@pytest.mark.parametrize("runner", ["docker:", "podman", "", "Docker"])
def test_invalid_runner_forms(runner):
    assert "runner" in _error_text(runner=runner)


@pytest.mark.parametrize("name", ["a/b", "../escape", "..", "/abs", "with space", "", "x" * 101])
def test_unsafe_names_are_rejected(name):
    assert "name" in _error_text(name=name)


def test_name_with_trailing_newline_is_rejected():
    assert "name" in _error_text(name="run\n")


def test_cpu_run_cannot_ask_for_nvml():
    assert "needs a GPU run" in _error_text(device="cpu", energy={"sampler": "nvml"})


def test_experiment_name_defaults_to_model_and_backend():
    assert make_config(model="org/Some-Model").experiment_name == "Some-Model-pytorch"
    assert make_config(name="mine").experiment_name == "mine"


# --- hashes ------------------------------------------------------------------------------------------------------


def test_measurement_config_hash_is_16_hex():
    assert HEX16.match(measurement_config_hash(make_config()))


def test_measurement_config_hash_is_stable_across_key_order_and_reserialisation():
    a = ExperimentConfig.model_validate({"model": "m", "n_prompts": 8, "pytorch": {"batch_size": 2, "use_cache": False}})
    b = ExperimentConfig.model_validate({"pytorch": {"use_cache": False, "batch_size": 2}, "n_prompts": 8, "model": "m"})
    again = ExperimentConfig.model_validate_json(a.model_dump_json())
    via_dict = ExperimentConfig.model_validate(json.loads(json.dumps(a.model_dump(mode="json"))))
    assert len({measurement_config_hash(c) for c in (a, b, again, via_dict)}) == 1


def test_measurement_config_hash_ignores_what_does_not_change_the_measurement():
    base = measurement_config_hash(make_config())
    assert measurement_config_hash(make_config(name="renamed")) == base
    assert measurement_config_hash(make_config(runner="docker:img")) == base
    assert measurement_config_hash(make_config(allow_model_download=True)) == base


@pytest.mark.parametrize("overrides", [{"n_prompts": 5}, {"pytorch": {"batch_size": 2}}, {"seed": 7}])
def test_measurement_config_hash_changes_with_what_is_measured(overrides):
    assert measurement_config_hash(make_config(**overrides)) != measurement_config_hash(make_config())


def test_contract_fingerprint_is_16_hex_and_stable():
    first = contract_fingerprint()
    assert HEX16.match(first)
    assert contract_fingerprint() == first


# --- protocol ----------------------------------------------------------------------------------------------------


def test_run_request_round_trips_json():
    request = RunRequest(experiment_id="e-1", config=make_config(pytorch={"batch_size": 4}),
                         model_path="/models/m", prompts_path="/prompts/p.jsonl", image="sha256:abc")
    back = RunRequest.model_validate_json(request.model_dump_json())
    assert back == request
    assert back.config.pytorch.batch_size == 4


def test_run_request_rejects_extra_keys():
    with pytest.raises(ValidationError, match="surprise"):
        RunRequest.model_validate({"experiment_id": "e", "config": {}, "model_path": "/m", "surprise": 1})


@pytest.mark.parametrize(
    "line",
    ["", "Loading checkpoint shards: 100%", "{not json", '{"event": "no-such-kind"}', '{"message": "no event"}',
     '{"event": "progress", "extra": 1}', "[1, 2]", '"{}"'],
)
def test_parse_event_returns_none_for_lines_that_are_not_events(line):
    assert parse_event(line) is None


def test_parse_event_returns_none_for_deeply_nested_junk():
    assert parse_event('{"a": ' + "[" * 100_000) is None


def test_parse_event_reads_a_valid_line():
    line = ProgressEvent(event="progress", done=3, total=8, data={"rate": 1.5}).to_line()
    event = parse_event("  " + line + "\n")
    assert event == ProgressEvent(event="progress", done=3, total=8, data={"rate": 1.5})


def test_event_lines_are_single_line_json_without_defaults():
    line = ProgressEvent(event="started", message="e-1").to_line()
    assert "\n" not in line
    assert json.loads(line) == {"event": "started", "message": "e-1"}


# --- result ------------------------------------------------------------------------------------------------------


def test_result_accepts_null_energy_with_a_reason():
    result = make_result()
    assert result.total_energy_j is None
    assert result.energy_per_token_j is None and result.adjusted_energy_j is None
    assert result.energy.unavailable_reason


def test_result_rejects_extra_keys():
    with pytest.raises(ValidationError, match="joules_total"):
        make_result(joules_total=1.0)


def test_result_rejects_a_malformed_config_hash():
    with pytest.raises(ValidationError, match="measurement_config_hash"):
        make_result(measurement_config_hash="not-a-hash")


def test_result_round_trips_json():
    result = make_result(total_energy_j=64.0, energy_per_token_j=2.0,
                         energy={"source": "nvml_counter", "method": "counter",
                                 "devices": [{"index": 0, "id": "0", "uuid": "GPU-1", "energy_j": 64.0}]})
    assert ExperimentResult.model_validate_json(result.model_dump_json()) == result


def test_the_registry_holds_each_in_tree_backend_with_its_knob_and_engine_fields():
    from lem_runner.contract import backend_names, backend_spec

    assert backend_names()[:3] == ("pytorch", "vllm", "tensorrt")
    knobs = {n: backend_spec(n).batch_knob for n in ("pytorch", "vllm", "tensorrt")}
    assert knobs == {"pytorch": "pytorch.batch_size", "vllm": "vllm.max_num_seqs",
                     "tensorrt": "tensorrt.max_batch_size"}
    for name in ("pytorch", "vllm", "tensorrt"):
        spec = backend_spec(name)
        # every engine field is a field the backend's section really has
        assert set(spec.engine_section_fields) <= set(spec.config.model_fields)
    assert "max_num_seqs" in backend_spec("vllm").engine_section_fields
    assert "batch_size" not in backend_spec("pytorch").engine_section_fields  # a generate() argument, not the engine
    assert backend_spec("tensorrt").device_kinds == ("cuda",)


def test_a_spec_naming_a_field_its_section_lacks_is_refused():
    from lem_runner.contract import BackendSpec, ImageSpec, backend_spec

    with pytest.raises(ValueError, match="'max_seqs' is not a field of VLLMConfig"):
        BackendSpec(name="x", config=backend_spec("vllm").config, implementation="m:C", summary="",
                    image=ImageSpec(extras={"gpu": "vllm"}, library="vllm"), host_modules=(), libraries=(),
                    batch_field="max_seqs", batch_meaning="", engine_section_fields=())


def test_the_contract_and_the_specs_import_no_engine():
    import subprocess
    import sys

    code = ("import sys, lem_runner.contract as c; c.registry(); import llenergymeasure.cli.app; "
            "heavy = [m for m in ('torch', 'vllm', 'tensorrt_llm', 'transformers') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_applied_batch_prefers_what_the_engine_reported():
    cfg = make_config(backend="vllm")
    assert cfg.batch_size is None  # unset: the engine chooses
    assert cfg.spec.applied_batch(cfg.section, {"max_num_seqs": 256}) == 256
    assert cfg.spec.applied_batch(cfg.section, {}) is None
    set_ = make_config(backend="vllm", vllm={"max_num_seqs": 8})
    assert set_.spec.applied_batch(set_.section, {}) == 8
