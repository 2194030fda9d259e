"""The Launcher protocol: one exchange protocol, two ways of starting the process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from lem_runner.contract import ProgressEvent, RunRequest

from llenergymeasure.models import ResolvedModel

EventSink = Callable[[ProgressEvent], None]

LOG_FILE = "runner.log"


@dataclass(frozen=True)
class Timeouts:
    """``wall_s``: the whole run; ``silence_s``: no stdout line for this long (a hung runner). None disables one."""

    wall_s: float | None = None
    silence_s: float | None = 900.0


@dataclass(frozen=True)
class LaunchSpec:
    """What to run: the request (with host paths) and where its files go."""

    exchange_dir: Path
    request: RunRequest
    model: ResolvedModel
    prompts_file: Path | None = None
    timeouts: Timeouts = Timeouts()


@dataclass(frozen=True)
class LaunchOutcome:
    """How the runner process ended. ``timed_out`` is 'wall' or 'silence' when the controller stopped it."""

    exit_code: int
    log_file: Path
    timed_out: str | None = None
    where: str = ""
    last_error: str | None = None  # the runner's last 'error' event: its cause even when no error.json got written
    scheduler_state: str | None = None  # a batch scheduler's final job state (Slurm: COMPLETED, FAILED, TIMEOUT, ...)


class ErrorMemo:
    """An event sink that passes events on and remembers the message of the last 'error' event."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self.message: str | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if event.event == "error" and event.message:
            self.message = event.message
        self.sink(event)


@runtime_checkable
class Launcher(Protocol):
    name: str

    def launch(self, spec: LaunchSpec, on_event: EventSink) -> LaunchOutcome: ...
