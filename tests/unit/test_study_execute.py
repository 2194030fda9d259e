"""Study execution against the FakeLauncher (no process): the manifest after every outcome, failures that do not stop
the others, the circuit breaker and --fail-fast, timeouts, Ctrl-C, and resuming without repeating or losing a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_result
from fakes import FakeLauncher
from lem_runner.contract import RESULT_FILE, RunError
from llenergymeasure.errors import ConfigError, Interrupted
from llenergymeasure.launchers import Timeouts
from llenergymeasure.options import RunOptions
from llenergymeasure.study import StudyConfig, StudyInterrupted, execute_study, expand_study
from llenergymeasure.study.manifest import MANIFEST_FILE, load_manifest
from llenergymeasure.study.resume import StudyLock, find_unfinished
from llenergymeasure.study.summary import SUMMARY_FILE


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the controller handles it, so the manifest stays as it was at that instant."""


@pytest.fixture
def model_dir(tmp_path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


def _study(model_dir: Path, **fields) -> StudyConfig:
    data = {"name": "st", "base": {"model": str(model_dir), "n_prompts": 2, "max_output_tokens": 4},
            "sweep": {"pytorch.batch_size": [1, 2]}, "n_cycles": 2, **fields}
    return StudyConfig.model_validate(data)


class Script:
    """Chooses each run's launcher: ``plan(call_number, point_label)`` returns a FakeLauncher (default: success)."""

    def __init__(self, plan=None) -> None:
        self.plan = plan or (lambda n, label: None)
        self.calls: list[str] = []
        self.launchers: list[FakeLauncher] = []

    def __call__(self, point, isolated: bool) -> FakeLauncher:
        self.calls.append(point.label)
        launcher = self.plan(len(self.calls), point.label) or FakeLauncher(result=make_result(config=point.config))
        self.launchers.append(launcher)
        return launcher


def _failing() -> FakeLauncher:
    return FakeLauncher(error=RunError(error_type="RuntimeError", message="boom", phase="load"))


def _run(study: StudyConfig, out: Path, script: Script, sleep=lambda s: None, **options):
    return execute_study(study, expand_study(study), output=out, options=RunOptions(**options), sleep=sleep,
                         launcher_for=script)


def _result_dirs(study_dir: Path) -> list[Path]:
    return sorted(p for p in study_dir.iterdir() if p.is_dir() and (p / RESULT_FILE).is_file())


def test_all_runs_done_manifest_summary_and_overhead(tmp_path, model_dir):
    study = _study(model_dir)
    outcome = _run(study, tmp_path / "r", Script())
    m = load_manifest(outcome.study_dir)
    assert m.status == "complete" and [e.status for e in m.entries] == ["done"] * 4
    assert [(e.point, e.cycle) for e in m.entries] == [(0, 1), (1, 1), (0, 2), (1, 2)]
    for e in m.entries:
        assert (outcome.study_dir / e.result_path / RESULT_FILE).is_file()
        assert e.result_path.startswith(f"{e.name}-") and e.attempts == 1 and e.runner == "fake"
        assert e.duration_s >= e.runner_s >= 0 and e.started <= e.finished
    assert len(m.sessions) == 1 and m.sessions[0].runs == 4 and m.sessions[0].outcome == "complete"
    assert m.controller_overhead_s_per_experiment is not None and m.controller_overhead_s_per_experiment >= 0
    summary = json.loads((outcome.study_dir / SUMMARY_FILE).read_text())
    assert summary["finished"] == 4 and summary["pending"] == 0 and summary["status"] == "complete"
    assert summary["controller_overhead_s_per_experiment"] == m.controller_overhead_s_per_experiment
    assert [a["n_ok"] for a in summary["aggregates"]] == [2, 2]


def test_a_failing_point_is_recorded_and_the_others_still_run(tmp_path, model_dir):
    script = Script(lambda n, label: _failing() if label == "pytorch.batch_size=2" else None)
    outcome = _run(_study(model_dir), tmp_path / "r", script)
    m = outcome.manifest
    assert m.status == "complete" and len(script.calls) == 4
    failed = [e for e in m.entries if e.status == "failed"]
    assert [e.label for e in failed] == ["pytorch.batch_size=2"] * 2
    assert all(e.reason == "runner_error" and "boom" in e.error for e in failed)
    assert all((outcome.study_dir / e.result_path / "error.json").is_file() for e in failed)
    assert len(_result_dirs(outcome.study_dir)) == 2


def test_circuit_breaker_stops_resumable_then_resume_and_retry_failed(tmp_path, model_dir):
    study = _study(model_dir, max_consecutive_failures=2)
    out = tmp_path / "r"
    outcome = _run(study, out, Script(lambda n, label: _failing()))
    m = load_manifest(outcome.study_dir)
    assert m.status == "stopped" and "2 runs failed in a row" in m.stop_reason
    assert [e.status for e in m.entries] == ["failed", "failed", "pending", "pending"]

    resumed = Script()
    again = _run(study, out, resumed, resume=True)
    assert again.study_dir == outcome.study_dir and len(resumed.calls) == 2
    m = load_manifest(outcome.study_dir)
    assert [e.status for e in m.entries] == ["failed", "failed", "done", "done"] and m.status == "complete"
    assert len(m.sessions) == 2

    failed_dirs = {e.result_path for e in m.entries if e.status == "failed"}
    retried = Script()
    _run(study, out, retried, resume=outcome.study_dir, retry_failed=True)
    m = load_manifest(outcome.study_dir)
    assert len(retried.calls) == 2 and [e.status for e in m.entries] == ["done"] * 4
    assert {a.result_path for e in m.entries for a in e.earlier} == failed_dirs
    assert all((outcome.study_dir / d).is_dir() for d in failed_dirs)  # earlier attempts are kept
    assert [e.attempts for e in m.entries] == [2, 2, 1, 1]
    assert len(_result_dirs(outcome.study_dir)) == 4


def test_fail_fast_stops_at_the_first_failure_and_zero_disables_the_breaker(tmp_path, model_dir):
    outcome = _run(_study(model_dir), tmp_path / "a", Script(lambda n, label: _failing()), fail_fast=True)
    assert outcome.status == "stopped" and outcome.manifest.stop_reason.startswith("--fail-fast")
    assert [e.status for e in outcome.manifest.entries] == ["failed", "pending", "pending", "pending"]

    script = Script(lambda n, label: _failing())
    outcome = _run(_study(model_dir, max_consecutive_failures=0), tmp_path / "b", script)
    assert outcome.status == "complete" and len(script.calls) == 4 and outcome.failed == 4


def test_timeout_from_the_study_reaches_the_launcher_and_is_recorded(tmp_path, model_dir):
    script = Script(lambda n, label: FakeLauncher(timed_out="wall") if n == 1 else None)
    outcome = _run(_study(model_dir, experiment_timeout_s=7.5, max_consecutive_failures=0), tmp_path / "r", script)
    assert [launcher.specs[0].timeouts.wall_s for launcher in script.launchers] == [7.5] * 4
    first = outcome.manifest.entries[0]
    assert first.status == "failed" and first.reason == "timeout" and "timeout after 7.5 s (wall-clock limit)" in first.error
    # an explicit --timeout wins over the study's field
    script = Script()
    _run(_study(model_dir, experiment_timeout_s=7.5), tmp_path / "o", script, timeouts=Timeouts(wall_s=3.0))
    assert {launcher.specs[0].timeouts.wall_s for launcher in script.launchers} == {3.0}


def _interrupt(spec):
    raise Interrupted("interrupted: the runner was stopped and wrote what it had")


def test_ctrl_c_puts_the_run_back_to_pending_and_resume_finishes_without_repeats(tmp_path, model_dir):
    study = _study(model_dir)
    out = tmp_path / "r"
    script = Script(lambda n, label: FakeLauncher(error=RunError(error_type="Interrupted", message="stopped",
                                                                 phase="measure"), before_exit=_interrupt)
                    if n == 3 else None)
    with pytest.raises(StudyInterrupted) as info:
        _run(study, out, script)
    study_dir = info.value.outcome.study_dir
    assert f"--resume {study_dir}" in str(info.value) and info.value.exit_code == 130
    m = load_manifest(study_dir)
    assert m.status == "interrupted" and [e.status for e in m.entries] == ["done", "done", "pending", "pending"]
    assert m.entries[2].result_path is None
    assert len([p for p in study_dir.iterdir() if p.is_dir()]) == 2  # the interrupted run's folder is gone

    resumed = Script()
    _run(study, out, resumed, resume=True)
    m = load_manifest(study_dir)
    assert [e.status for e in m.entries] == ["done"] * 4 and len(resumed.calls) == 2
    assert len(_result_dirs(study_dir)) == 4 and len([p for p in study_dir.iterdir() if p.is_dir()]) == 4


def test_ctrl_c_during_a_gap_leaves_nothing_running(tmp_path, model_dir):
    calls = []

    def sleep(seconds):
        calls.append(seconds)
        raise KeyboardInterrupt

    with pytest.raises(StudyInterrupted) as info:
        _run(_study(model_dir, gap_seconds=5), tmp_path / "r", Script(), sleep=sleep)
    m = load_manifest(info.value.outcome.study_dir)
    assert calls == [5] and [e.status for e in m.entries] == ["done", "pending", "pending", "pending"]


def test_gaps_between_runs_only_and_no_gaps_turns_them_off(tmp_path, model_dir):
    slept = []
    outcome = _run(_study(model_dir, gap_seconds=2), tmp_path / "a", Script(), sleep=slept.append)
    assert slept == [2, 2, 2]
    assert outcome.manifest.sessions[0].gap_s >= 0
    slept.clear()
    _run(_study(model_dir, gap_seconds=2), tmp_path / "b", Script(), sleep=slept.append, no_gaps=True)
    assert slept == []


def test_resume_after_a_killed_controller_discards_the_cut_off_run_and_never_reads_it(tmp_path, model_dir):
    study = _study(model_dir)
    out = tmp_path / "r"

    def killed_after_result(spec):
        raise Killed  # the runner wrote result.json, the controller died before recording it

    script = Script(lambda n, label: FakeLauncher(result=make_result(), before_exit=killed_after_result)
                    if n == 2 else None)
    with pytest.raises(Killed):
        _run(study, out, script)
    (study_dir,) = out.iterdir()
    m = load_manifest(study_dir)
    assert [e.status for e in m.entries] == ["done", "running", "pending", "pending"]
    cut = study_dir / m.entries[1].result_path
    assert (cut / RESULT_FILE).is_file()
    (cut / "marker").write_text("the cut-off attempt")  # its rerun may get the same folder name (same second)
    # a folder a killed controller created for a pending run before it could record it
    orphan = study_dir / f"{m.entries[3].name}-20250101-000000"
    orphan.mkdir()
    (orphan / RESULT_FILE).write_text("{}")

    resumed = Script()
    outcome = _run(study, out, resumed, resume=True)
    assert not (cut / "marker").exists() and not orphan.exists()
    assert resumed.calls == ["pytorch.batch_size=2", "pytorch.batch_size=1", "pytorch.batch_size=2"]
    m = load_manifest(study_dir)
    assert [e.status for e in m.entries] == ["done"] * 4 and m.entries[1].attempts == 2
    assert len(_result_dirs(study_dir)) == 4 and len(outcome.results) == 4


def test_a_done_run_whose_result_vanished_runs_again(tmp_path, model_dir):
    study = _study(model_dir, n_cycles=1)
    out = tmp_path / "r"
    first = _run(study, out, Script(lambda n, label: _failing() if n == 2 else None))
    done = first.manifest.entries[0]
    (first.study_dir / done.result_path / RESULT_FILE).unlink()
    # the study is complete (one done, one failed): resume it by folder
    resumed = Script()
    _run(study, out, resumed, resume=first.study_dir)
    assert resumed.calls == ["pytorch.batch_size=1"]
    assert [e.status for e in load_manifest(first.study_dir).entries] == ["done", "failed"]


def test_resume_refuses_another_config_and_finds_the_newest_unfinished(tmp_path, model_dir):
    out = tmp_path / "r"
    study = _study(model_dir, max_consecutive_failures=1)
    older = _run(study, out, Script(lambda n, label: _failing())).study_dir
    newer = _run(study, out, Script(lambda n, label: _failing())).study_dir
    assert older != newer and find_unfinished(out, "st") == newer
    changed = _study(model_dir, max_consecutive_failures=1, n_cycles=3)
    with pytest.raises(ConfigError, match="different study config"):
        _run(changed, out, Script(), resume=True)
    # execution knobs are not part of the config: a resume may change them
    _run(_study(model_dir, gap_seconds=1, experiment_timeout_s=9), out, Script(), resume=older, no_gaps=True)
    assert not load_manifest(older).unfinished and find_unfinished(out, "st") == newer
    with pytest.raises(ConfigError, match="no unfinished study named 'other'"):
        find_unfinished(out, "other")
    with pytest.raises(ConfigError, match="not a study folder"):
        _run(study, out, Script(), resume=tmp_path)


def test_a_study_folder_in_use_cannot_be_resumed_twice(tmp_path, model_dir):
    study = _study(model_dir)
    out = tmp_path / "r"
    outcome = _run(study, out, Script(lambda n, label: _failing()), fail_fast=True)
    with StudyLock(outcome.study_dir), pytest.raises(ConfigError, match="another lem process"):
        _run(study, out, Script(), resume=outcome.study_dir)
    assert load_manifest(outcome.study_dir).count("pending") == 3


def test_corrupt_manifest_is_one_clear_error(tmp_path, model_dir):
    study_dir = tmp_path / "r" / "st-x"
    study_dir.mkdir(parents=True)
    (study_dir / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="manifest.json: not a valid study manifest"):
        _run(_study(model_dir), tmp_path / "r", Script(), resume=study_dir)


def test_study_config_execution_fields_have_bounds(model_dir):
    study = _study(model_dir)
    assert study.experiment_timeout_s is None and study.max_consecutive_failures == 3
    for bad in ({"experiment_timeout_s": 0}, {"max_consecutive_failures": -1}):
        with pytest.raises(ValueError):
            _study(model_dir, **bad)
