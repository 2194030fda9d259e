"""FileResultsRepository on a real tmp folder, and FakeResultsRepository shown to behave like it on the protocol."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest
from conftest import make_config, make_result
from fakes import FakeResultsRepository
from lem_runner.contract import ExperimentConfig, RunError
from lem_runner.contract.atomic import atomic_write_text
from llenergymeasure.errors import ConfigError
from llenergymeasure.results import FileResultsRepository, ResultsRepository
from llenergymeasure.results.repository import CorruptResult

STAMP = re.compile(r"^exp-\d{8}-\d{6}$")
ERROR = RunError(experiment_id="exp", error_type="RuntimeError", message="CUDA out of memory", phase="measure")


def _stamps_around_now(seconds: int = 5) -> list[str]:
    """Timestamp stems for every second from a little before now to a little after."""
    now = datetime.now()
    return [f"exp-{(now + timedelta(seconds=s)).strftime('%Y%m%d-%H%M%S')}" for s in range(-1, seconds)]


# --- new_experiment_dir -----------------------------------------------------------------------------------------


def test_a_new_experiment_dir_is_named_after_the_experiment_and_the_time(tmp_path):
    repo = FileResultsRepository(tmp_path / "deep" / "results")
    exp_dir = repo.new_experiment_dir("exp")
    assert exp_dir.parent == tmp_path / "deep" / "results"
    assert STAMP.match(exp_dir.name)
    assert exp_dir.is_dir() and list(exp_dir.iterdir()) == []


def test_a_taken_name_in_the_same_second_gets_a_suffix_and_is_never_reused(tmp_path):
    taken = _stamps_around_now()
    for stem in taken:  # every second the call could land in is already taken...
        (tmp_path / stem).mkdir()
        (tmp_path / stem / "result.json").write_text("earlier run")
    repo = FileResultsRepository(tmp_path)
    second = repo.new_experiment_dir("exp")
    third = repo.new_experiment_dir("exp")
    assert re.fullmatch(r"exp-\d{8}-\d{6}-2", second.name)  # ...so the call gets -2, not the existing folder
    assert list(second.iterdir()) == []
    assert third != second and re.fullmatch(r"exp-\d{8}-\d{6}-[23]", third.name)
    assert all((tmp_path / stem / "result.json").read_text() == "earlier run" for stem in taken)


def test_two_calls_in_the_same_second_get_the_stem_and_then_stem_2(tmp_path):
    for attempt in range(5):  # retried only if the two calls straddle a second boundary
        repo = FileResultsRepository(tmp_path / str(attempt))
        first, second = repo.new_experiment_dir("exp"), repo.new_experiment_dir("exp")
        if second.name.startswith(first.name):
            break
    assert STAMP.match(first.name)
    assert second.name == f"{first.name}-2"
    assert first.is_dir() and second.is_dir()


def test_repeated_calls_never_return_the_same_folder(tmp_path):
    repo = FileResultsRepository(tmp_path)
    dirs = [repo.new_experiment_dir("exp") for _ in range(5)]
    assert len(set(dirs)) == 5
    assert all(d.is_dir() and d.name.startswith("exp-") for d in dirs)


def test_an_output_path_that_is_a_file_is_a_config_error(tmp_path):
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"^output: '.*results' exists and is not a directory$") as info:
        FileResultsRepository(tmp_path / "results").new_experiment_dir("exp")
    assert str(tmp_path / "results") in str(info.value)
    assert (tmp_path / "results").read_text() == "not a folder"


def test_an_output_path_under_a_file_is_a_config_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="output: .* is not a directory"):
        FileResultsRepository(tmp_path / "file" / "results").new_experiment_dir("exp")


# --- config, result and error files -----------------------------------------------------------------------------


def test_save_config_writes_json_that_validates_back(tmp_path):
    repo = FileResultsRepository(tmp_path)
    exp_dir = repo.new_experiment_dir("exp")
    config = make_config(name="exp", pytorch={"batch_size": 4}, prompts={"source": "synthetic", "input_tokens": 16})
    repo.save_config(exp_dir, config)
    data = json.loads((exp_dir / "config.json").read_text())
    assert ExperimentConfig.model_validate(data) == config
    assert [p.name for p in exp_dir.iterdir()] == ["config.json"]  # no temp files left behind


def test_result_and_error_are_none_when_absent(tmp_path):
    repo = FileResultsRepository(tmp_path)
    exp_dir = repo.new_experiment_dir("exp")
    assert (repo.load_result(exp_dir), repo.load_error(exp_dir)) == (None, None)


def test_valid_files_load_as_models(tmp_path):
    repo = FileResultsRepository(tmp_path)
    exp_dir = repo.new_experiment_dir("exp")
    result = make_result(experiment_id=exp_dir.name)
    atomic_write_text(exp_dir / "result.json", result.model_dump_json(indent=2))
    atomic_write_text(exp_dir / "error.json", ERROR.model_dump_json())
    assert repo.load_result(exp_dir) == result
    assert repo.load_error(exp_dir) == ERROR


@pytest.mark.parametrize(
    ("name", "text", "model"),
    [
        ("result.json", make_result().model_dump_json()[:200], "ExperimentResult"),
        ("result.json", '{"experiment_id": "x"}', "ExperimentResult"),
        ("result.json", "", "ExperimentResult"),
        ("error.json", '{"error_type": "RuntimeError", "mess', "RunError"),
    ],
)
def test_a_truncated_or_foreign_file_is_corrupt_and_names_itself(tmp_path, name, text, model):
    repo = FileResultsRepository(tmp_path)
    exp_dir = repo.new_experiment_dir("exp")
    (exp_dir / name).write_text(text)
    load = repo.load_result if name == "result.json" else repo.load_error
    with pytest.raises(CorruptResult) as info:
        load(exp_dir)
    assert str(info.value).startswith(f"{exp_dir / name}: not a valid {model} (")
    assert "\n" not in str(info.value)


# --- the fake's twin test ---------------------------------------------------------------------------------------


class _FileTwin(FileResultsRepository):
    """The real repository, plus the fake's put_* helpers written as the runner would write the files."""

    def put_result(self, exp_dir, result):
        atomic_write_text(exp_dir / "result.json", result.model_dump_json())

    def put_error(self, exp_dir, error):
        atomic_write_text(exp_dir / "error.json", error.model_dump_json())


@pytest.fixture(params=["file", "fake"])
def repo(request, tmp_path):
    return _FileTwin(tmp_path / "out") if request.param == "file" else FakeResultsRepository(tmp_path / "out")


def test_both_repositories_behave_alike_on_the_protocol(repo, tmp_path):
    assert isinstance(repo, ResultsRepository)
    first, second = repo.new_experiment_dir("exp"), repo.new_experiment_dir("exp")
    assert first != second
    assert first.parent == second.parent == tmp_path / "out"
    assert first.is_dir() and second.is_dir()
    assert first.name.startswith("exp") and second.name.startswith("exp")

    repo.save_config(first, make_config(name="exp"))
    assert (repo.load_result(first), repo.load_error(first)) == (None, None)

    result = make_result(experiment_id=first.name)
    repo.put_result(first, result)
    repo.put_error(second, ERROR)
    assert (repo.load_result(first), repo.load_error(first)) == (result, None)
    assert (repo.load_result(second), repo.load_error(second)) == (None, ERROR)


def test_the_fake_records_its_calls_and_configs(tmp_path):
    repo = FakeResultsRepository(tmp_path)
    exp_dir = repo.new_experiment_dir("exp")
    repo.save_config(exp_dir, make_config(name="exp"))
    repo.load_result(exp_dir)
    assert repo.calls == [("new_experiment_dir", "exp"), ("save_config", exp_dir), ("load_result", exp_dir)]
    assert repo.configs[exp_dir].name == "exp"
