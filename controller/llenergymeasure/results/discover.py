"""Finding experiments under a results directory: every folder holding result.json or error.json, however deep
(single runs and study sub-runs alike), with the study, point label and cycle a study's manifest gives them.

Reading never fails on one bad folder: a result that does not validate is listed as failed with the reason, so one
damaged file cannot hide the rest of a study."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lem_runner.contract import ERROR_FILE, RESULT_FILE, ExperimentConfig, ExperimentResult, RunError

from llenergymeasure.errors import ConfigError
from llenergymeasure.results.repository import CONFIG_FILE, CorruptResult, FileResultsRepository

MANIFEST_FILE = "manifest.json"
SUMMARY_FILE = "study_summary.json"


@dataclass(frozen=True)
class Experiment:
    """One experiment folder: its result, or why it has none."""

    path: Path
    result: ExperimentResult | None = None
    error: RunError | None = None
    problem: str | None = None  # a result/error file that exists but does not validate
    config: ExperimentConfig | None = None
    study: str | None = None
    label: str | None = None
    cycle: int | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def status(self) -> str:
        """done; interrupted (stopped by a signal: error.json says so); incomplete (neither result.json nor
        error.json: lem itself was killed mid-run); else failed."""
        if self.result is not None:
            return "done"
        if self.error is not None:
            return "interrupted" if self.error.status == "interrupted" else "failed"
        return "failed" if self.problem else "incomplete"

    @property
    def experiment_id(self) -> str:
        return self.result.experiment_id if self.result is not None else self.path.name

    @property
    def failure(self) -> str | None:
        """One line saying why there is no result."""
        if self.result is not None:
            return None
        if self.error is not None:  # the runner's message may start with the error type already: say it once
            e = self.error
            said = e.message if e.message.startswith(f"{e.error_type}:") else f"{e.error_type}: {e.message}"
            return f"{e.phase}: {said}".splitlines()[0]
        return self.problem or "no result.json or error.json: the run was stopped before it could write either"

    @property
    def when(self) -> datetime | None:
        if self.result is not None:
            return self.result.start_time
        for name in (ERROR_FILE, RESULT_FILE, CONFIG_FILE):
            try:
                return datetime.fromtimestamp((self.path / name).stat().st_mtime, UTC)
            except OSError:
                continue
        return None


def is_experiment_dir(path: Path) -> bool:
    """A run's folder: its result or error, or (incomplete) the config lem saved before starting the runner."""
    return (path / RESULT_FILE).is_file() or (path / ERROR_FILE).is_file() or (
        (path / CONFIG_FILE).is_file() and not is_study_dir(path))


def is_study_dir(path: Path) -> bool:
    return (path / MANIFEST_FILE).is_file() or (path / SUMMARY_FILE).is_file()


def load_experiment(path: Path, study: tuple[str | None, str | None, int | None] = (None, None, None)) -> Experiment:
    """The experiment in ``path`` (a folder, or its result.json / error.json); corrupt files become a failure."""
    repo = FileResultsRepository(path.parent)
    result = error = None
    problem = None
    try:
        result = repo.load_result(path)
    except CorruptResult as exc:
        problem = str(exc)
    if result is None:
        try:
            error = repo.load_error(path)
        except CorruptResult as exc:
            problem = problem or str(exc)
    config = result.config if result is not None else _config(path)
    return Experiment(path, result, error, problem, config, *study)


def _config(path: Path) -> ExperimentConfig | None:
    try:
        return ExperimentConfig.model_validate_json((path / CONFIG_FILE).read_bytes())
    except (OSError, ValueError):
        return None


def _study_index(study_dir: Path) -> dict[str, tuple[str | None, str | None, int | None]]:
    """Run folder name -> (study, point label, cycle), from the manifest; empty when it is unreadable."""
    try:
        data = json.loads((study_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
        out = {}
        for entry in data.get("entries", []):
            meta = (data.get("study"), entry.get("label"), entry.get("cycle"))
            for path in [entry.get("result_path"), *(a.get("result_path") for a in entry.get("earlier", []))]:
                if path:
                    out[Path(path).name] = meta
        return out
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def resolve_dir(path: Path) -> Path:
    """``path`` as an existing directory, or ConfigError naming it."""
    if not path.exists():
        raise ConfigError(f"{path}: no such directory")
    if not path.is_dir():
        raise ConfigError(f"{path}: not a directory")
    return path


def find_experiments(root: Path) -> list[Experiment]:
    """Every experiment under ``root`` (``root`` itself may be one), in path order; ConfigError when there is none."""
    resolve_dir(root)
    found: list[Experiment] = []
    studies: dict[Path, dict] = {}
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if is_study_dir(here):
            studies[here] = _study_index(here)
        if is_experiment_dir(here):
            dirnames[:] = []  # an experiment folder holds no further experiments
            meta = studies.get(here.parent, {}).get(here.name, (None, None, None))
            found.append(load_experiment(here, meta))
    if not found:
        raise ConfigError(f"{root}: no experiments found (no folder with result.json or error.json)")
    return found


def experiment_from_arg(path: Path) -> Experiment:
    """The experiment a user named: its folder or its result.json / error.json; ConfigError otherwise."""
    if path.is_file() and path.name in (RESULT_FILE, ERROR_FILE):
        path = path.parent
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory")
    if not path.is_dir() or not is_experiment_dir(path):
        raise ConfigError(f"{path}: not a result (expected an experiment folder or its result.json)")
    experiment = load_experiment(path)
    if experiment.problem and experiment.error is None:
        raise ConfigError(experiment.problem)  # a file the user named that is not a result is bad input
    return experiment
