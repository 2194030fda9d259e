"""What `lem run` would refuse beyond the models' rules, found at load time (so `lem config validate` finds it too):
JSONL prompts files, sections for a backend the run does not use, all problems in one message."""

from __future__ import annotations

import pytest
from conftest import write_yaml
from llenergymeasure.config import load_config
from llenergymeasure.errors import ConfigError


def _error(path, overrides=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return str(info.value)


def _jsonl_config(tmp_path, lines: str | None, field: str = "prompt"):
    if lines is not None:
        (tmp_path / "p.jsonl").write_text(lines, encoding="utf-8")
    return write_yaml(tmp_path / "exp.yaml", f"prompts:\n  source: jsonl\n  path: p.jsonl\n  field: {field}\n")


def test_a_missing_jsonl_file_is_refused_naming_the_field(tmp_path):
    path = _jsonl_config(tmp_path, None)
    assert _error(path) == f"{path}: prompts.path: file '{tmp_path / 'p.jsonl'}' not found"


def test_a_wrong_jsonl_field_is_a_config_problem_with_a_suggestion(tmp_path):
    path = _jsonl_config(tmp_path, '{"prompts": "a"}\n{"prompts": "b"}\n')
    assert _error(path) == (f"{path}: prompts.field: {tmp_path / 'p.jsonl'}:1 has no non-empty string 'prompt' "
                            "(did you mean field: 'prompts'?)")
    other = _jsonl_config(tmp_path, '{"text": "a"}\n', field="question")
    assert _error(other).endswith("has no non-empty string 'question'; its keys: text")


def test_a_bad_line_later_in_the_file_is_named(tmp_path):
    path = _jsonl_config(tmp_path, '{"prompt": "a"}\n\n{"prompt": ""}\n')
    assert f"{tmp_path / 'p.jsonl'}:3 has no non-empty string 'prompt'" in _error(path)
    path = _jsonl_config(tmp_path, '{"prompt": "a"}\nnot json\n')
    assert f"{tmp_path / 'p.jsonl'}:2: not JSON" in _error(path)


def test_a_good_jsonl_file_loads(tmp_path):
    assert load_config(_jsonl_config(tmp_path, '{"prompt": "a"}\n{"prompt": "b"}\n')).prompts.source == "jsonl"


def test_a_flag_for_another_backend_is_refused_naming_the_flag(tmp_path):
    message = _error(None, {"backend": "vllm", "pytorch.batch_size": 4})
    assert message == "command line: --batch-size: a pytorch setting, but the backend is 'vllm' (it would be ignored)"


def test_a_section_for_another_backend_is_refused(tmp_path):
    path = write_yaml(tmp_path / "p.yaml", "backend: pytorch\nvllm:\n  max_model_len: 512\n")
    assert _error(path) == (f"{path}: vllm: settings for backend 'vllm', but the backend is 'pytorch' (they would be "
                            "ignored; remove the section or set backend: vllm)")
    implicit = write_yaml(tmp_path / "q.yaml", "tensorrt:\n  max_batch_size: 4\n")  # backend defaults to pytorch
    assert "tensorrt: settings for backend 'tensorrt'" in _error(implicit)


def test_switching_the_backend_by_flag_keeps_the_files_own_section(tmp_path):
    # examples/demo.yaml has a pytorch section; `--backend vllm` switches on purpose, nothing is silently dropped
    path = write_yaml(tmp_path / "demo.yaml", "backend: pytorch\npytorch:\n  batch_size: 8\n")
    assert load_config(path, {"backend": "vllm"}).backend == "vllm"


def test_every_problem_is_reported_at_once(tmp_path):
    path = write_yaml(tmp_path / "p.yaml", "backend: pytorch\nvllm:\n  max_model_len: 512\n"
                                           "prompts:\n  source: jsonl\n  path: absent.jsonl\n")
    message = _error(path)
    assert message.startswith(f"{path}: 2 problems: vllm: settings for backend 'vllm'")
    assert "; prompts.path: file" in message
