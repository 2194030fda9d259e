"""The restore journal: before lem changes a GPU's operating point it writes, atomically, what the GPU was set to
and what it is about to change, into the GPU lock folder (``restore-<host>-gpu-<id>.json``). It is deleted once the
GPU is restored. A lem killed by SIGKILL leaves it behind; the next lem that uses that GPU on this host (and
``lem doctor --restore-gpu``) finds it, sees that its writer is gone, restores the GPU and says so. A journal whose
writer is still alive belongs to that lem and is left alone."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lem_runner.contract.atomic import atomic_write_text

from llenergymeasure.host.gpu_lock import lock_dir

VERSION = 1


def _host() -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname())[:60] or "host"


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), to tell a live writer from a
    new process that reused its pid; None where /proc does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def is_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    now = process_start(pid)
    return start is None or now is None or now == start


@dataclass
class Journal:
    gpu: str
    uuid: str | None
    pid: int
    pid_start: str | None
    host: str
    created: str
    command: str
    #: what the run changes: any of power_limit, sm_clocks, memory_clocks, persistence_mode
    changes: list[str] = field(default_factory=list)
    previous_power_limit_w: float | None = None
    previous_persistence_mode: bool | None = None
    version: int = VERSION
    path: Path | None = field(default=None, compare=False)

    @property
    def writer_alive(self) -> bool:
        return self.host == _host() and is_alive(self.pid, self.pid_start)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.created} ({self.command[:120]})"


def journal_path(gpu: str, directory: Path | None = None) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in gpu)[:80]
    return (directory or lock_dir()) / f"restore-{_host()}-gpu-{safe}.json"


def new_journal(gpu: str, uuid: str | None, changes: list[str], previous_power_limit_w: float | None,
                previous_persistence_mode: bool | None) -> Journal:
    return Journal(gpu=gpu, uuid=uuid, pid=os.getpid(), pid_start=process_start(os.getpid()), host=_host(),
                   created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), command=" ".join(sys.argv)[:300],
                   changes=changes, previous_power_limit_w=previous_power_limit_w,
                   previous_persistence_mode=previous_persistence_mode)


def write_journal(journal: Journal, directory: Path | None = None) -> Path:
    path = journal_path(journal.gpu, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in asdict(journal).items() if k != "path"}
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    journal.path = path
    return path


def read_journal(path: Path) -> Journal | None:
    """The journal at ``path``; None when it is gone. A damaged one raises ValueError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"restore journal {path} is unreadable ({exc}); check the GPU with nvidia-smi and delete it") from None
    try:
        journal = Journal(**data)
    except TypeError as exc:
        raise ValueError(f"restore journal {path} is not one lem wrote ({exc})") from None
    journal.path = path
    return journal


def find_journal(gpu: str, directory: Path | None = None) -> Journal | None:
    return read_journal(journal_path(gpu, directory))


def host_journals(directory: Path | None = None) -> list[Path]:
    """Every journal of this host in the lock folder."""
    folder = directory or lock_dir()
    return sorted(folder.glob(f"restore-{_host()}-gpu-*.json")) if folder.is_dir() else []


def remove_journal(journal: Journal) -> None:
    if journal.path is not None:
        with contextlib.suppress(FileNotFoundError):
            journal.path.unlink()
