"""Notice an engine that died in its own processes, and say why, within seconds.

vLLM runs its engine core and workers in child processes. When one of them dies (seen: the CPU image has no C++
compiler, so torch inductor's compile kills the worker with ``InvalidCxxCompiler``), the front end in this process
can wait forever, and the run would only end at the controller's silence timeout, with no cause.

:class:`EngineWatch` does two things while the engine is loading or generating:

- it tees this process's stderr (fd 2, which the children inherit) through a pipe, passing every byte on and
  keeping the last lines, so the children's own error messages are at hand;
- it polls ``/proc`` every ``period_s`` for this process's children and grandchildren (vLLM's engine core and its
  workers, Python processes only, or processes titled as the backend's spec says, ``engine_markers.titles``; deeper processes such as compiler pools, and helper tools, are not watched). One
  that was seen alive on ``min_polls`` polls and is then gone means the engine is dead: the main thread gets :class:`EngineDied`, whose message names the process and
  the first exception line the children logged (the root cause, before any wrapper's "initialization failed").
  A line matching one of the spec's ``engine_markers.fatal`` (the engine's own failure messages, never a generic
  phrase: Python's harmless ``resource_tracker: process died unexpectedly`` must not fail a run) counts as a death.

The main thread is reached with a signal (SIGUSR1) whose handler raises, so a wait in a blocking call is interrupted
too. Linux only (``/proc``); elsewhere the watch does nothing.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import threading
import time
from pathlib import Path

from lem_runner.contract.backends import EngineMarkers

_EXCEPTION_LINE = re.compile(r"(?:^|\s)((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)(?::.*)?)$")
#: no engine-specific knowledge: multiprocessing children are watched, no log line marks a failure
NO_MARKERS = EngineMarkers()


class EngineDied(RuntimeError):
    """An engine process this runner started is gone; the message says which, and why (from its log)."""


def _alive_pid(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :][:1] != "Z"


def _children(root: int | None = None, depth: int = 2) -> dict[int, set[int]]:
    """ppid -> pids, zombies left out. With ``root``: its children and theirs down to ``depth`` levels, read from
    each process's ``/proc/<pid>/task/<tid>/children`` — a few small files per poll instead of the whole process
    table (the full scan cost ~5 ms of CPU per poll with 136 processes here, ~1 % of a core at 2 Hz, taken beside
    the engine, and grows with the host's process count). Without ``root``, or where the kernel has no children
    files, the whole table."""
    if root is not None and Path(f"/proc/{root}/task/{root}/children").exists():
        tree: dict[int, set[int]] = collections.defaultdict(set)
        level = [root]
        for _ in range(depth):
            nxt = []
            for pid in level:
                try:
                    tasks = list(os.scandir(f"/proc/{pid}/task"))
                except OSError:
                    continue
                for task in tasks:
                    try:
                        kids = Path(task.path, "children").read_text().split()
                    except OSError:
                        continue
                    for kid in map(int, kids):
                        if _alive_pid(kid):
                            tree[pid].add(kid)
                            nxt.append(kid)
            level = nxt
        return tree
    out: dict[int, set[int]] = collections.defaultdict(set)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z":
            out[int(fields[1])].add(int(entry.name))
    return out


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _cmdline(pid: int | str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _is_engine_process(pid: int, titles: tuple[str, ...] = ()) -> bool:
    """A multiprocessing child: forked (the same command line as this process), spawned (multiprocessing's own
    command line), or titled as the backend's spec says its engine titles its processes (``engine_markers.titles``,
    e.g. VLLM::EngineCore). Not a helper the engine runs as a plain subprocess (a model-class inspection, lscpu, a
    compiler), which comes and goes by design."""
    cmdline = _cmdline(pid)
    return bool(cmdline) and (cmdline == _cmdline("self") or b"multiprocessing" in cmdline
                              or (bool(titles) and _name(pid).startswith(titles)))


def root_cause(lines: list[str], wrappers: tuple[str, ...] = ()) -> str | None:
    """The first exception line in ``lines`` that is not one of the engine's wrappers, else the first at all."""
    found = [m.group(1).strip() for ln in lines if (m := _EXCEPTION_LINE.search(ln.rstrip()))]
    found = [f for f in found if not f.startswith(("Traceback", "KeyboardInterrupt"))]
    plain = [f for f in found if not any(w in f for w in wrappers)]
    return (plain or found or [None])[0]


class EngineWatch:
    """A context manager around engine load and generation; ``pause()`` it while the engine is closed on purpose."""

    def __init__(self, what: str = "engine", period_s: float = 0.5, keep_lines: int = 400, min_polls: int = 3,
                 markers: EngineMarkers = NO_MARKERS) -> None:
        self.what = what
        self.markers = markers  # the engine's own process titles and log lines (its backend's spec)
        self.period_s = period_s
        self.min_polls = min_polls  # polls a process must be seen alive on before its exit counts
        self.lines: collections.deque[str] = collections.deque(maxlen=keep_lines)
        self.died: str | None = None
        self.fatal_line: str | None = None  # the first line saying the engine failed for good
        self._pids: set[int] = set()
        self._active = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._saved_fd: int | None = None
        self._old_handler = None
        self._main = threading.main_thread().ident

    # --- stderr tee ---------------------------------------------------------------------------------------------
    def _start_tee(self) -> None:
        read_fd, write_fd = os.pipe()
        self._saved_fd = os.dup(2)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        saved = self._saved_fd

        def pump() -> None:
            pending = b""
            while True:
                try:
                    chunk = os.read(read_fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                with contextlib.suppress(OSError):
                    os.write(saved, chunk)
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for c in complete:
                    line = c.decode("utf-8", "replace")
                    self.lines.append(line)
                    if self.fatal_line is None and any(m in line for m in self.markers.fatal):
                        self.fatal_line = line
            os.close(read_fd)

        t = threading.Thread(target=pump, daemon=True, name="lem-stderr-tee")
        t.start()
        self._threads.append(t)

    # --- process watch ------------------------------------------------------------------------------------------
    def _watch(self) -> None:
        me = os.getpid()
        seen: dict[int, int] = {}  # pid -> polls it was seen alive
        names: dict[int, str] = {}
        while not self._stop.wait(self.period_s):
            if not self._active.is_set():
                seen.clear()
                continue
            tree = _children(me)
            alive = set(tree.get(me, set()))
            alive |= {g for c in list(alive) for g in tree.get(c, set())}
            for pid in alive:
                if pid not in names:
                    names[pid] = _name(pid) if _is_engine_process(pid, self.markers.titles) else ""
                if names[pid]:
                    seen[pid] = seen.get(pid, 0) + 1
            self._pids |= set(seen)
            gone = [pid for pid, n in seen.items() if n >= self.min_polls and pid not in alive]
            if (gone or self.fatal_line) and self._active.is_set():
                time.sleep(min(1.0, 2 * self.period_s))  # let its last words reach the log
                cause = root_cause(list(self.lines), self.markers.wrappers)
                if gone:
                    what = f"{self.what} process {names.get(gone[0], '?')} (pid {gone[0]}) exited"
                else:
                    what = f"{self.what} failed"
                self.died = what + (f": {cause}" if cause else " (no error in its log)")
                with contextlib.suppress(OSError, ValueError):
                    signal.pthread_kill(self._main, signal.SIGUSR1)
                return
            for stale in [p for p in seen if p not in alive]:
                del seen[stale]

    def _on_signal(self, signum, frame) -> None:
        if self.died and self._active.is_set():
            self._active.clear()
            raise EngineDied(self.died)

    def check(self) -> None:
        """Raise EngineDied if the watch found the engine dead (for loops that poll)."""
        if self.died:
            raise EngineDied(self.died)

    def start(self) -> EngineWatch:
        if not Path("/proc/self/stat").exists():
            return self
        if threading.current_thread() is threading.main_thread():
            self._old_handler = signal.signal(signal.SIGUSR1, self._on_signal)
        self._start_tee()
        t = threading.Thread(target=self._watch, daemon=True, name="lem-engine-watch")
        t.start()
        self._threads.append(t)
        self._active.set()
        return self

    def kill_engine(self) -> None:
        """SIGKILL the engine processes the watch saw and that still linger (after a death, so this process can exit
        instead of waiting on them)."""
        for pid in self._pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def pause(self) -> None:
        self._active.clear()

    def resume(self) -> None:
        if not self.died:
            self._active.set()

    def stop(self) -> None:
        """Stop watching and give fd 2 back (the tee thread ends once every child holding the pipe has exited)."""
        self._active.clear()
        self._stop.set()
        if self._saved_fd is not None:
            time.sleep(0.1)  # let the tee pass on what is in the pipe (a traceback just printed)
            os.dup2(self._saved_fd, 2)  # the tee keeps writing to its copy for children that still hold the pipe
            self._saved_fd = None
        if self._old_handler is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGUSR1, self._old_handler)
            self._old_handler = None
