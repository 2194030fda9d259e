"""Engine sessions, controller side: one runner (process or container) keeps its engine loaded while the controller
hands it runs one by one (``request-0001.json``, ... in the session folder; see lem_runner.contract.protocol).

Each run is handed over only when the one before it has been recorded, and each result lands atomically in that
run's own folder, so a controller killed mid-session loses only the run in progress. The first run that does not end
in ``done`` ends the session: the runner exits (a failed engine is never measured on again) and the study opens a new
session for the runs left. Local and Docker launchers start the runner; this class speaks the protocol for both.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lem_runner.contract import SESSION_END_FILE, ProgressEvent, RunRequest, session_request_file
from lem_runner.contract.atomic import atomic_write_text

from llenergymeasure.launchers.base import LOG_FILE, ErrorMemo, EventSink, Launcher, LaunchOutcome, LaunchSpec
from llenergymeasure.launchers.stream import pump

#: how long a runner gets to unload and exit after ``end`` (or after a failed run) before it is killed
CLOSE_GRACE_S = 60.0


@dataclass
class RunnerProcess:
    """A runner started in session mode, as its launcher started it."""

    lines: queue.Queue  # its stdout lines, then an EOF marker (launchers.stream.start_reader)
    stop: Callable[[], None]  # graceful: the runner writes the current run's error.json and exits
    kill: Callable[[], None]
    wait: Callable[[float], int | None]  # its exit code, or None while it still runs after that many seconds
    finish: Callable[[], None]  # after it exited: keep its logs, remove what was started (a container)
    where: str
    log_file: Path
    log_line: Callable[[str], None]  # a stray stdout line, kept in the log
    log_mark: Callable[[], object]  # where the runner's log stands now
    log_since: Callable[[object], str]  # what it logged since a mark (a run's share of the session's log)


class EngineSession:
    """A sequence of runs on one loaded engine. ``run`` measures one (like ``Launcher.launch``); ``close`` ends it."""

    def __init__(self, launcher, session_dir: Path, identity: str, cycle: int) -> None:
        self.launcher = launcher
        self.session_dir = session_dir
        self.identity = identity
        self.cycle = cycle
        self.name = launcher.name
        self.runs = 0
        self._proc: RunnerProcess | None = None
        self._exit: int | None = None
        self.docker: tuple | None = None  # the Docker launcher's (image id, uses a GPU, mounted folder)

    @property
    def alive(self) -> bool:
        """Whether the runner can take another run: not ended, and (once started) still running; one that exited
        between runs (idle limit, a crash while waiting) ends the session, so the next run opens a new one."""
        if self._exit is None and self._proc is not None and self._proc.wait(0.05) is not None:
            self._end(self._proc)
        return self._exit is None

    def run(self, spec: LaunchSpec, on_event: EventSink) -> LaunchOutcome:
        """Hand the runner ``spec``'s request and read its events until that run ends."""
        if not self.alive:
            raise RuntimeError("engine session already ended")
        memo = ErrorMemo(on_event)
        self.runs += 1
        n = self.runs
        if self._proc is None:
            self.session_dir.mkdir(parents=True, exist_ok=True)
            self._proc = self.launcher.start_session(self, spec)
        proc = self._proc
        mark = proc.log_mark()
        request: RunRequest = self.launcher.session_request(self, spec)
        atomic_write_text(self.session_dir / session_request_file(n), request.model_dump_json(indent=2))
        ended: list[ProgressEvent] = []

        def until(event: ProgressEvent) -> bool:
            if event.event in ("done", "error") and event.data.get("request") in (n, None):
                ended.append(event)
                return True
            return False

        log_file = spec.exchange_dir / LOG_FILE
        try:
            timed_out = pump(proc.lines, memo, on_other_line=proc.log_line, timeouts=spec.timeouts, stop=proc.stop,
                             kill=proc.kill, until=until)
        except BaseException:  # Ctrl-C: the runner writes this run's error.json and exits
            self._end(proc, log_file, mark)
            raise
        where = f"{proc.where}, engine session {self.session_dir.name} run {n}"
        if ended and ended[0].event == "done" and timed_out is None:
            _keep_log(log_file, proc.log_since(mark))
            return LaunchOutcome(exit_code=0, log_file=log_file, where=where, last_error=memo.message)
        code = self._end(proc, log_file, mark)  # a failed, stopped or vanished run ends the session
        return LaunchOutcome(exit_code=code, log_file=log_file, timed_out=timed_out, last_error=memo.message,
                             where=where)

    def _end(self, proc: RunnerProcess, log_file: Path | None = None, mark: object = None) -> int:
        """Wait for the runner to exit (kill it after a grace period), give the run in progress its share of the
        log, and remove the session folder (its requests were copies; each run's folder holds its own)."""
        code = proc.wait(CLOSE_GRACE_S)
        if code is None:
            proc.kill()
            code = proc.wait(CLOSE_GRACE_S)
        self._exit = code if code is not None else -9
        proc.finish()
        if log_file is not None:
            _keep_log(log_file, proc.log_since(mark))
        shutil.rmtree(self.session_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # the study's .sessions folder, once no session is left in it
            self.session_dir.parent.rmdir()
        return self._exit

    def close(self) -> None:
        """End the session: the runner unloads and exits (killed after a grace period); idempotent."""
        proc = self._proc
        if proc is None or not self.alive:
            return
        try:
            atomic_write_text(self.session_dir / SESSION_END_FILE, "")
        except OSError:
            proc.kill()
        self._end(proc)


class SessionLauncher(Launcher):
    """An engine session seen as a Launcher, so a study's run goes through execute_experiment unchanged."""

    def __init__(self, session: EngineSession) -> None:
        self.session = session
        self.name = session.name

    def launch(self, spec: LaunchSpec, on_event: EventSink) -> LaunchOutcome:
        return self.session.run(spec, on_event)


def session_log(session_dir: Path) -> Path:
    """The session runner's own log (stderr and stray stdout of all its runs)."""
    return session_dir / LOG_FILE


def _keep_log(log_file: Path, text: str) -> None:
    with contextlib.suppress(OSError):
        log_file.write_text(text, encoding="utf-8")
