"""Run the runner as a local subprocess: ``python -m lem_runner --config … --out …``."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import signal
import subprocess
import sys

from lem_runner.contract import REQUEST_FILE, RunRequest
from lem_runner.contract.atomic import atomic_write_text

from llenergymeasure.launchers.base import LOG_FILE, ErrorMemo, EventSink, Launcher, LaunchOutcome, LaunchSpec
from llenergymeasure.launchers.session import EngineSession, RunnerProcess, session_log
from llenergymeasure.launchers.stream import pump, start_reader


class LocalLauncher(Launcher):
    """The runner in this machine's Python environment; needs the backend's libraries installed here."""

    name = "local"
    sessions = True

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    def _request(self, spec: LaunchSpec) -> RunRequest:
        return spec.request.model_copy(
            update={"model_path": spec.model.host_path, "prompts_path": str(spec.prompts_file) if spec.prompts_file else None}
        )

    @staticmethod
    def _env(spec: LaunchSpec) -> dict:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if not spec.request.config.allow_model_download:
            env["HF_HUB_OFFLINE"] = "1"
        return env

    def session_request(self, session: EngineSession, spec: LaunchSpec) -> RunRequest:
        """A run of an engine session: host paths, and its own folder to write to."""
        return self._request(spec).model_copy(update={"out_dir": str(spec.exchange_dir)})

    def start_session(self, session: EngineSession, first: LaunchSpec) -> RunnerProcess:
        """``python -m lem_runner --session DIR``; it dies with the controller, as a single run's runner does."""
        log_path = session_log(session.session_dir)
        log = open(log_path, "w", encoding="utf-8")
        proc = subprocess.Popen(
            [self.python, "-m", "lem_runner", "--session", str(session.session_dir)],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, env=self._env(first),
            start_new_session=True, preexec_fn=functools.partial(_die_with_parent, os.getpid()),
        )

        def wait(timeout: float) -> int | None:
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None

        def finish() -> None:
            if proc.poll() is None:
                _signal(proc, signal.SIGKILL)
                proc.wait()
            log.close()

        def log_mark() -> int:
            if not log.closed:
                log.flush()
            return log_path.stat().st_size

        def log_since(mark: object) -> str:
            if not log.closed:
                log.flush()
            with open(log_path, "rb") as fh:
                fh.seek(int(mark))  # type: ignore[call-overload]
                return fh.read().decode("utf-8", "replace")

        return RunnerProcess(lines=start_reader(proc.stdout), stop=lambda: _signal(proc, signal.SIGINT),
                             kill=lambda: _signal(proc, signal.SIGKILL), wait=wait, finish=finish,
                             where=f"pid {proc.pid}", log_file=log_path,
                             log_line=lambda line: log.write(f"[stdout] {line}\n"),
                             log_mark=log_mark, log_since=log_since)

    def launch(self, spec: LaunchSpec, on_event: EventSink) -> LaunchOutcome:
        on_event = memo = ErrorMemo(on_event)
        request = self._request(spec)
        request_file = spec.exchange_dir / REQUEST_FILE
        atomic_write_text(request_file, request.model_dump_json(indent=2))
        env = self._env(spec)
        log_path = spec.exchange_dir / LOG_FILE
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.Popen(
                [self.python, "-m", "lem_runner", "--config", str(request_file), "--out", str(spec.exchange_dir)],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the controller only; it forwards a graceful stop
                preexec_fn=functools.partial(_die_with_parent, os.getpid()),
            )
            try:
                timed_out = pump(
                    start_reader(proc.stdout),
                    on_event,
                    on_other_line=lambda line: log.write(f"[stdout] {line}\n"),
                    timeouts=spec.timeouts,
                    stop=lambda: _signal(proc, signal.SIGINT),
                    kill=lambda: _signal(proc, signal.SIGKILL),
                )
                code = proc.wait()
            finally:
                if proc.poll() is None:
                    _signal(proc, signal.SIGKILL)
                    proc.wait()
        return LaunchOutcome(exit_code=code, log_file=log_path, timed_out=timed_out, last_error=memo.message, where=f"pid {proc.pid}")


_PR_SET_PDEATHSIG = 1
_prctl = getattr(ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True), "prctl", None) \
    if sys.platform.startswith("linux") else None


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: the kernel kills the runner if the controller dies (even by SIGKILL), so a killed
    study leaves no orphan runner measuring on, unrecorded, beside the resumed one. Linux only; elsewhere a no-op."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the controller died before the call above took effect
            os._exit(1)


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
