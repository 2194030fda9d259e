"""FileResultsRepository on a real tmp folder, and FakeResultsRepository shown to behave like it on the protocol."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import make_config, make_result
from fakes import FakeResultsRepository
from lem_runner.contract import ExperimentConfig, RunError
from lem_runner.contract.atomic import atomic_write_text
from llenergymeasure.errors import ConfigError
from llenergymeasure.results import FileResultsRepository, ResultsRepository
from llenergymeasure.results.repository import CorruptResult

STAMP = re.compile(r"^exp-\d{8}-\d{6}-\d{3}$")
ERROR = RunError(experiment_id="exp", error_type="RuntimeError", message="CUDA out of memory", phase="measure")


# --- new_experiment_dir -----------------------------------------------------------------------------------------


def test_a_new_experiment_dir_is_named_after_the_experiment_and_the_time(tmp_path):
    repo = FileResultsRepository(tmp_path / "deep" / "results")
    exp_dir = repo.new_experiment_dir("exp")
    assert exp_dir.parent == tmp_path / "deep" / "results"
    assert STAMP.match(exp_dir.name)
    assert exp_dir.is_dir() and list(exp_dir.iterdir()) == []


def _new_dir_in_a_process(root, at: float) -> str:
    """The folder name a fresh lem process makes under ``root`` when its clock reads ``at``."""
    code = ("import sys; from llenergymeasure.results import FileResultsRepository; "
            "print(FileResultsRepository(sys.argv[1], now=lambda: float(sys.argv[2])).new_experiment_dir('exp').name)")
    proc = subprocess.run([sys.executable, "-c", code, str(root), repr(at)], capture_output=True, text=True,
                          timeout=60, check=True)
    return proc.stdout.strip()


def test_a_name_another_process_took_gets_a_suffix_and_is_never_reused(tmp_path):
    frozen = 1_800_000_000.25  # two processes on the same clock tick
    first = _new_dir_in_a_process(tmp_path, frozen)
    (tmp_path / first / "result.json").write_text("earlier run")
    second = _new_dir_in_a_process(tmp_path, frozen)
    assert STAMP.match(first) and second == f"{first}-2"
    assert list((tmp_path / second).iterdir()) == []
    assert (tmp_path / first / "result.json").read_text() == "earlier run"


def test_a_folder_name_is_never_handed_out_twice_even_after_its_folder_was_deleted(tmp_path):
    # a resume deletes a lost attempt's folder and makes the new attempt's, often within the same second (a Slurm
    # resume test saw both attempts' result_path equal): the two attempts must not share a name (their result_path,
    # container label and job name would be the same). The frozen clock puts both calls in the same millisecond.
    import shutil

    frozen = 1_800_000_000.25
    lost = FileResultsRepository(tmp_path, now=lambda: frozen).new_experiment_dir("exp")
    shutil.rmtree(lost)
    again = FileResultsRepository(tmp_path, now=lambda: frozen).new_experiment_dir("exp")
    assert again.name != lost.name and STAMP.match(again.name)
    assert [p.name for p in tmp_path.iterdir()] == [again.name]
    # on the real clock too
    lost = FileResultsRepository(tmp_path / "real").new_experiment_dir("exp")
    shutil.rmtree(lost)
    assert FileResultsRepository(tmp_path / "real").new_experiment_dir("exp").name != lost.name


def test_two_calls_in_the_same_second_get_different_stamps(tmp_path):
    repo = FileResultsRepository(tmp_path)
    first, second = repo.new_experiment_dir("exp"), repo.new_experiment_dir("exp")
    assert STAMP.match(first.name) and STAMP.match(second.name)
    assert second.name > first.name  # later, and in name order
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
