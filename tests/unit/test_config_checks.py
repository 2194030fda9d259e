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


@pytest.mark.parametrize("backend, section, field", [("pytorch", "pytorch", "batch_size"),
                                                     ("vllm", "vllm", "max_num_seqs"),
                                                     ("tensorrt", "tensorrt", "max_batch_size")])
def test_batch_size_lands_on_the_backends_batch_knob(tmp_path, backend, section, field):
    from llenergymeasure.config.checks import BATCH_SIZE

    cfg = load_config(None, {"backend": backend, BATCH_SIZE: 7})
    assert getattr(getattr(cfg, section), field) == 7 and cfg.batch_size == 7
    assert cfg.spec.batch_knob == f"{section}.{field}"
    # the file's backend decides when no --backend is given
    path = write_yaml(tmp_path / "e.yaml", f"backend: {backend}\n")
    assert getattr(getattr(load_config(path, {BATCH_SIZE: 3}), section), field) == 3


def test_a_section_for_another_backend_is_refused_by_the_model_too():
    from lem_runner.contract import ExperimentConfig
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        ExperimentConfig(backend="pytorch", vllm={"max_num_seqs": 4})
    (err,) = info.value.errors()
    assert err["loc"] == ("vllm",) and "settings for backend 'vllm', but the backend is 'pytorch'" in err["msg"]
    # what files written before sections were optional hold (every section, at its defaults) still reads
    old = ExperimentConfig.model_validate({"backend": "vllm", "pytorch": {"batch_size": 1, "use_cache": True},
                                           "tensorrt": {}})
    assert old.pytorch is None and old.tensorrt is None and set(old.model_dump()) >= {"vllm"}
    assert "pytorch" not in old.model_dump() and "tensorrt" not in old.model_dump()


def test_an_unknown_backend_lists_the_known_ones():
    from lem_runner.contract import backend_names

    message = _error(None, {"backend": "nope"})
    assert message == f"command line: backend: unknown backend 'nope' (known: {', '.join(backend_names())})"


def test_a_study_base_holds_a_section_per_swept_backend_and_each_point_keeps_its_own(tmp_path):
    from llenergymeasure.study import expand_study, load_study

    path = write_yaml(tmp_path / "s.yaml", "name: s\nbase:\n  pytorch:\n    batch_size: 2\n  vllm:\n"
                                           "    max_num_seqs: 3\nsweep:\n  backend: [pytorch, vllm]\n")
    points = expand_study(load_study(path)).points
    assert [(p.config.backend, p.config.batch_size) for p in points] == [("pytorch", 2), ("vllm", 3)]
    assert points[0].config.vllm is None and points[1].config.pytorch is None
    idle = write_yaml(tmp_path / "t.yaml", "name: t\nbase:\n  vllm:\n    max_num_seqs: 3\nsweep:\n  n_prompts: [1, 2]\n")
    with pytest.raises(ConfigError) as info:
        expand_study(load_study(idle))
    assert "vllm: settings for backend 'vllm', but no point of the study uses it" in str(info.value)


def test_batch_size_on_a_study_sweeping_backends_sets_each_knob(tmp_path):
    from llenergymeasure.config.checks import BATCH_SIZE
    from llenergymeasure.study import expand_study, load_study

    path = write_yaml(tmp_path / "s.yaml", "name: s\nsweep:\n  backend: [pytorch, vllm]\n")
    points = expand_study(load_study(path, {BATCH_SIZE: 5})).points
    assert [(p.config.spec.batch_knob, p.config.batch_size) for p in points] == [("pytorch.batch_size", 5),
                                                                                 ("vllm.max_num_seqs", 5)]
