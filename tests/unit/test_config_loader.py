"""Config loading: one-line errors naming the file and field path, overrides, and config-relative paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_yaml
from lem_runner.contract import ExperimentConfig
from llenergymeasure.config.loader import (
    apply_overrides,
    format_validation_error,
    load_config,
    parse_config,
    read_config_file,
)
from llenergymeasure.errors import ConfigError
from pydantic import ValidationError


def _error(path, overrides=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message, "a config error is reported as one line"
    assert info.value.exit_code == 2
    return message


# --- validation messages ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("pytorch:\n  batch_sise: 4\n", "pytorch.batch_sise", "unknown field"),
        ("n_promts: 4\n", "n_promts", "unknown field"),
        ("pytorch:\n  batch_size: 0\n", "pytorch.batch_size", "greater than or equal to 1"),
        ("prompts:\n  source: synthetic\n  input_tokens: lots\n", "prompts.input_tokens", "valid integer"),
        ("dtype: float64\n", "dtype", "'bfloat16'"),
        ("name: a/b\n", "name", "no path separators"),
    ],
)
def test_a_bad_field_is_one_line_naming_the_file_and_the_dotted_path(tmp_path, text, field, words):
    path = write_yaml(tmp_path / "exp.yaml", text)
    message = _error(path)
    assert message.startswith(f"{path}: {field}: ")
    assert words in message


def test_several_problems_are_all_reported_each_naming_its_field(tmp_path):
    path = write_yaml(tmp_path / "b.yaml", "dtype: float64\nn_prompts: 0\nseed: -1\n")
    message = _error(path)
    assert message.startswith(f"{path}: 3 problems: dtype: ")
    assert "; n_prompts: Input should be greater than or equal to 1" in message
    assert "; seed: Input should be greater than or equal to 0" in message
    assert "more problem" not in message


def test_format_validation_error_takes_the_source_it_is_given_and_suggests_the_field_meant():
    with pytest.raises(ValidationError) as info:
        ExperimentConfig.model_validate({"decoding": {"temprature": 0.5}})
    assert format_validation_error("flags", info.value) == ("flags: decoding.temprature: unknown field "
                                                            "(did you mean 'temperature'?)")


@pytest.mark.parametrize("text, expected", [
    ("n_promts: 4\n", "n_promts: unknown field (did you mean 'n_prompts'?)"),
    ("pytorch:\n  batchsize: 4\n", "pytorch.batchsize: unknown field (did you mean 'batch_size'?)"),
    ("vllm:\n  enforce_eagre: true\n", "vllm.enforce_eagre: unknown field (did you mean 'enforce_eager'?)"),
    ("zzz: 1\n", "zzz: unknown field (check the spelling)"),
])
def test_a_misspelt_key_gets_a_did_you_mean(tmp_path, text, expected):
    path = write_yaml(tmp_path / "t.yaml", "backend: vllm\n" + text if "vllm" in text else text)
    assert _error(path) == f"{path}: {expected}"


def test_a_cross_field_problem_is_attributed_to_the_top_level():
    with pytest.raises(ConfigError, match=r"^cfg: \(top level\): prompts.input_tokens exceeds max_input_tokens$"):
        parse_config({"prompts": {"source": "synthetic", "input_tokens": 600}, "max_input_tokens": 512}, "cfg")


@pytest.mark.parametrize("data", [[1, 2], "model: x", 3, None])
def test_parse_config_wants_a_mapping(data):
    with pytest.raises(ConfigError, match=r"^src: expected a mapping of settings, got "):
        parse_config(data, "src")


def test_a_valid_file_loads_with_every_default_filled_in(tmp_path):
    cfg = load_config(write_yaml(tmp_path / "exp.yaml", "model: org/name\npytorch:\n  batch_size: 4\n"))
    assert cfg.model == "org/name"
    assert cfg.pytorch.batch_size == 4
    assert cfg.n_prompts == ExperimentConfig().n_prompts


def test_json_files_are_read_too(tmp_path):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps({"model": "org/name", "n_prompts": 3}))
    assert load_config(path).n_prompts == 3


# --- unreadable files -------------------------------------------------------------------------------------------


def test_yaml_syntax_errors_give_line_and_column(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", "model: org/name\nn_prompts: 4: 5\n")
    message = _error(path)
    assert message.startswith(f"{path}: invalid YAML at line 2, column ")
    assert "mapping values are not allowed" in message


def test_a_top_level_list_is_rejected(tmp_path):
    path = write_yaml(tmp_path / "list.yaml", "- model: org/name\n")
    assert _error(path) == f"{path}: expected a mapping of settings at the top level, got list"


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing set yet\n"])
def test_an_empty_file_means_the_defaults(tmp_path, text):
    path = write_yaml(tmp_path / "empty.yaml", text)
    assert read_config_file(path) == {}
    assert load_config(path) == ExperimentConfig()


def test_a_directory_is_not_a_config_file(tmp_path):
    assert _error(tmp_path) == f"{tmp_path}: is a directory, not a config file"


def test_a_missing_file_is_named(tmp_path):
    assert _error(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: config file not found"


def test_non_utf8_bytes_are_rejected(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    assert _error(path) == f"{path}: config file is not UTF-8 text"


def test_a_file_over_one_megabyte_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * 1_000_000 + "\n")
    assert _error(path) == f"{path}: config file is larger than 1 MB"


# --- overrides --------------------------------------------------------------------------------------------------


def test_dotted_overrides_create_missing_sections():
    assert apply_overrides({}, {"pytorch.batch_size": 8, "n_prompts": 2}) == {"pytorch": {"batch_size": 8}, "n_prompts": 2}


def test_overrides_merge_into_existing_sections_and_skip_none():
    data = {"pytorch": {"batch_size": 2, "use_cache": False}, "n_prompts": 4}
    merged = apply_overrides(data, {"pytorch.batch_size": 8, "n_prompts": None, "dtype": None})
    assert merged == {"pytorch": {"batch_size": 8, "use_cache": False}, "n_prompts": 4}


def test_overrides_do_not_mutate_the_original():
    data = {"pytorch": {"batch_size": 2}, "decoding": {"do_sample": False}}
    before = json.loads(json.dumps(data))
    apply_overrides(data, {"pytorch.batch_size": 8, "decoding.do_sample": True, "prompts.source": "builtin"})
    assert data == before


def test_overrides_win_over_the_file_and_are_validated(tmp_path):
    path = write_yaml(tmp_path / "exp.yaml", "model: org/name\npytorch:\n  batch_size: 2\n")
    assert load_config(path, {"pytorch.batch_size": 16, "n_prompts": None}).pytorch.batch_size == 16
    assert _error(path, {"pytorch.batch_size": 0}).startswith(f"{path}: pytorch.batch_size: ")


def test_without_a_file_the_source_is_the_command_line():
    assert load_config(None, {"n_prompts": 5}).n_prompts == 5
    assert _error(None, {"n_prompts": 0}).startswith("command line: n_prompts: ")


# --- paths relative to the config file --------------------------------------------------------------------------


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """The config lives in tmp/configs; the process runs from tmp/cwd, so cwd-relative resolution would be wrong."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    (tmp_path / "configs").mkdir()
    return tmp_path / "configs"


@pytest.mark.parametrize(("ref", "where"), [("./model", "configs/model"), ("../shared/model", "shared/model")])
def test_a_relative_model_folder_is_resolved_against_the_config_folder(elsewhere, ref, where):
    cfg = load_config(write_yaml(elsewhere / "exp.yaml", f"model: {ref}\n"))
    assert cfg.model == str((elsewhere.parent / where).resolve())


def test_a_relative_prompts_path_is_resolved_against_the_config_folder(elsewhere):
    (elsewhere / "data").mkdir()
    (elsewhere / "data" / "p.jsonl").write_text('{"prompt": "hi"}\n')
    cfg = load_config(write_yaml(elsewhere / "exp.yaml", "prompts:\n  source: jsonl\n  path: data/p.jsonl\n"))
    assert cfg.prompts.path == str((elsewhere / "data" / "p.jsonl").resolve())


def test_hub_ids_and_absolute_paths_are_left_alone(elsewhere, tmp_path):
    text = f"model: org/name\nprompts:\n  source: jsonl\n  path: {tmp_path}/p.jsonl\n"
    (tmp_path / "p.jsonl").write_text('{"prompt": "hi"}\n')
    cfg = load_config(write_yaml(elsewhere / "exp.yaml", text))
    assert (cfg.model, cfg.prompts.path) == ("org/name", f"{tmp_path}/p.jsonl")


def test_a_relative_model_given_as_an_override_stays_relative_to_the_cwd(elsewhere):
    cfg = load_config(write_yaml(elsewhere / "exp.yaml", "n_prompts: 2\n"), {"model": "./model"})
    assert cfg.model == "./model"


def test_a_home_relative_prompts_path_is_not_glued_onto_the_config_folder(elsewhere, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "p.jsonl").write_text('{"prompt": "hi"}\n')
    cfg = load_config(write_yaml(elsewhere / "exp.yaml", "prompts:\n  source: jsonl\n  path: ~/p.jsonl\n"))
    assert Path(cfg.prompts.path).expanduser() == tmp_path / "home" / "p.jsonl"
