"""Run the runner as a local subprocess: ``python -m lem_runner --config … --out …``."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import signal
import subprocess
import sys

from lem_runner.contract import REQUEST_FILE
from lem_runner.contract.atomic import atomic_write_text

from llenergymeasure.launchers.base import LOG_FILE, ErrorMemo, EventSink, LaunchOutcome, LaunchSpec
from llenergymeasure.launchers.stream import pump, start_reader


class LocalLauncher:
    """The runner in this machine's Python environment; needs the backend's libraries installed here."""

    name = "local"

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    def launch(self, spec: LaunchSpec, on_event: EventSink) -> LaunchOutcome:
        on_event = memo = ErrorMemo(on_event)
        request = spec.request.model_copy(
            update={"model_path": spec.model.host_path, "prompts_path": str(spec.prompts_file) if spec.prompts_file else None}
        )
        request_file = spec.exchange_dir / REQUEST_FILE
        atomic_write_text(request_file, request.model_dump_json(indent=2))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if not spec.request.config.allow_model_download:
            env["HF_HUB_OFFLINE"] = "1"
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
