"""The Launcher protocol: one exchange protocol, several ways of starting the process (a local subprocess, a
container, a Slurm job). What callers need to know about a launcher is on the protocol itself (its checks and its
capabilities), never read from its name or probed with ``hasattr``."""

from __future__ import annotations

from collections.abc import Callable, Hashable
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
    """Starts a runner on an exchange directory. Subclass it for the defaults: nothing to check, one run at a time,
    no engine sessions."""

    #: what the run is recorded as running on (the manifest's ``runner``, the display's title); a label only
    name: str
    #: runs several at once through ``submit``/``poll`` (a batch scheduler), so a study hands it every run
    concurrent: bool = False
    #: can keep one runner, with its engine, for a study's consecutive runs (``start_session``)
    sessions: bool = False
    #: the scheduler allocates the run's GPUs on its own node (Slurm): this host's GPUs and lock are not its
    allocates_devices: bool = False
    #: runs the runner inside a container image: what the runner reads must be in the image or copied in
    contained: bool = False

    def launch(self, spec: LaunchSpec, on_event: EventSink) -> LaunchOutcome: ...

    def check_key(self, config) -> Hashable | None:
        """What ``check`` depends on for ``config`` (configs with equal keys need one check); None: nothing to
        check, the machine is ready for this launcher by construction."""
        return None

    def check(self, config) -> None:
        """Raise SetupError (exit 3, naming the fix) when this machine cannot launch ``config`` now (engine, image,
        scheduler), before any result folder exists."""
