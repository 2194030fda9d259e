"""The results directory: one folder per experiment holding config.json, request.json, runner.log and exactly one
of result.json / error.json. Folders are created exclusively, so nothing already written is ever overwritten."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from lem_runner.contract import ERROR_FILE, RESULT_FILE, ExperimentConfig, ExperimentResult, RunError
from lem_runner.contract.atomic import atomic_write_text
from pydantic import ValidationError

from llenergymeasure.errors import ConfigError

CONFIG_FILE = "config.json"


class CorruptResult(Exception):
    """A result or error file that exists but does not validate (truncated, edited, foreign)."""


@runtime_checkable
class ResultsRepository(Protocol):
    def new_experiment_dir(self, name: str) -> Path: ...

    def save_config(self, exp_dir: Path, config: ExperimentConfig) -> None: ...

    def load_result(self, exp_dir: Path) -> ExperimentResult | None: ...

    def load_error(self, exp_dir: Path) -> RunError | None: ...


#: the last folder stamp this process handed out, in milliseconds since the epoch (stamps only move forward)
_last_stamp_ms = 0
_stamp_lock = threading.Lock()


def folder_stamp(now: Callable[[], float] = time.time) -> str:
    """``YYYYmmdd-HHMMSS-mmm`` (local time, to the millisecond), later than every stamp this process handed out
    before: two attempts of a run made in the same second (a resume discards the lost attempt's folder and makes
    the new one) get different names even though the first folder is gone, which a name to the second and an
    existence check cannot guarantee."""
    global _last_stamp_ms
    with _stamp_lock:
        ms = max(int(now() * 1000), _last_stamp_ms + 1)
        _last_stamp_ms = ms
    return f"{datetime.fromtimestamp(ms / 1000).strftime('%Y%m%d-%H%M%S')}-{ms % 1000:03d}"


class FileResultsRepository:
    def __init__(self, root: str | Path, now: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self.now = now

    def new_experiment_dir(self, name: str) -> Path:
        """``<root>/<name>-<YYYYmmdd-HHMMSS-mmm>`` (``folder_stamp``), with -2, -3… when another process made that
        folder first."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(f"output: '{self.root}' exists and is not a directory") from None
        except PermissionError:
            raise ConfigError(f"output: cannot create '{self.root}' (permission denied)") from None
        stem = f"{name}-{folder_stamp(self.now)}"
        for n in range(1, 1000):
            path = self.root / (stem if n == 1 else f"{stem}-{n}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
        raise ConfigError(f"output: too many experiments named {stem} in {self.root}")

    def save_config(self, exp_dir: Path, config: ExperimentConfig) -> None:
        atomic_write_text(exp_dir / CONFIG_FILE, config.model_dump_json(indent=2))

    def load_result(self, exp_dir: Path) -> ExperimentResult | None:
        return _load(exp_dir / RESULT_FILE, ExperimentResult)

    def load_error(self, exp_dir: Path) -> RunError | None:
        return _load(exp_dir / ERROR_FILE, RunError)


def _load(path: Path, model):
    if not path.is_file():
        return None
    try:
        return model.model_validate_json(path.read_bytes())
    except (ValidationError, ValueError) as exc:
        raise CorruptResult(f"{path}: not a valid {model.__name__} ({str(exc).splitlines()[0]})") from None
