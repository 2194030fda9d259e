"""Pump runner stdout lines (from a process pipe or a container log stream) into progress events, enforcing the
wall-clock and silence timeouts and turning Ctrl-C into a graceful stop, then a kill on the second press. SIGTERM,
SIGHUP (the terminal went away) and a closed stdout (``lem run … | head``: EPIPE, Python's form of SIGPIPE) stop the
run the same way, so the runner still writes its error.json and the folder is marked interrupted."""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable

from lem_runner.contract import ProgressEvent, parse_event

from llenergymeasure.errors import Interrupted
from llenergymeasure.launchers.base import EventSink, Timeouts

_EOF = object()


def start_reader(lines: Iterable[str]) -> queue.Queue:
    """Read ``lines`` on a daemon thread into a queue that ends with an EOF marker."""
    q: queue.Queue = queue.Queue()

    def _read() -> None:
        try:
            for line in lines:
                q.put(line)
        except Exception:
            pass
        finally:
            q.put(_EOF)

    threading.Thread(target=_read, daemon=True, name="lem-runner-stdout").start()
    return q


def pump(
    q: queue.Queue,
    on_event: EventSink,
    on_other_line: Callable[[str], None],
    timeouts: Timeouts,
    stop: Callable[[], None],
    kill: Callable[[], None],
    until: Callable[[ProgressEvent], bool] | None = None,
) -> str | None:
    """Consume the queue until EOF (or, with ``until``, the first event it accepts: an engine session's run ends
    while its runner goes on). Returns 'wall'/'silence' if a timeout fired (after ``kill``), else None.

    The first Ctrl-C calls ``stop`` (the runner then writes error.json and exits); a second calls ``kill``. Either
    way :class:`Interrupted` is raised once the stream has ended.
    """
    presses = _CtrlC()
    with presses:
        timed_out = _pump(q, on_event, on_other_line, timeouts, stop, kill, presses, until)
    if presses.count:
        raise Interrupted(f"interrupted by {presses.cause}")
    return timed_out


#: signals that stop a run gracefully, like Ctrl-C (SIGPIPE itself is ignored by Python: a write raises EPIPE)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _CtrlC:
    """Counts Ctrl-C presses (and SIGTERM/SIGHUP) while installed (main thread only), instead of raising wherever the
    signal lands."""

    def __init__(self) -> None:
        self.count = 0
        self.cause = ""
        self._old: dict = {}

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._press) for sig in STOP_SIGNALS}
        return self

    def _press(self, signum, frame) -> None:
        self.press("Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name)

    def press(self, cause: str) -> None:
        self.count += 1
        self.cause = self.cause or cause

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _pump(q, on_event, on_other_line, timeouts, stop, kill, presses: _CtrlC, until=None) -> str | None:
    start = last = time.monotonic()
    handled = 0
    broken = False
    while True:
        if presses.count > handled:
            handled = presses.count
            (stop if handled == 1 else kill)()
        now = time.monotonic()
        if timeouts.wall_s is not None and now - start > timeouts.wall_s:
            kill()
            return "wall"
        if timeouts.silence_s is not None and now - last > timeouts.silence_s and not handled:
            kill()
            return "silence"
        try:
            item = q.get(timeout=0.2)
        except queue.Empty:
            continue
        if item is _EOF:
            return None
        last = time.monotonic()
        text = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
        event = parse_event(text)
        if event is not None:
            try:
                on_event(event)
            except BrokenPipeError:  # whoever read our stdout has gone (`| head`): stop as on SIGPIPE
                if not broken:
                    broken = True
                    presses.press("SIGPIPE (stdout closed)")
            if until is not None and until(event):
                return None
        elif text.strip():
            on_other_line(text.rstrip("\n"))
