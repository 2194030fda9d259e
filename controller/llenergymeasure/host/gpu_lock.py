"""An advisory per-GPU lock, so two `lem` processes on one machine never measure on the same GPU at once.

Each GPU an experiment uses has a lock file ``<cache_root()>/locks/gpu-<id>.lock`` (or under ``$LEM_LOCK_DIR``,
a folder all users of a shared machine can write); the controller holds an exclusive
``fcntl.flock`` on it from just before the runner starts until it has ended. The kernel drops the lock when the
holder exits, even by SIGKILL, so a crashed controller never leaves a GPU locked. The holder writes its pid, command
and start time into the file, so a waiting process can say who it waits for. Lock files are never deleted (deleting
a flock file lets two processes lock two different inodes of the same name).

Which runs lock: ``device: cuda``, or ``device: auto`` on a host where NVML sees GPUs; one lock per listed device
index (host/NVML numbering, translated through CUDA_VISIBLE_DEVICES when the controller has it set). A CPU run locks
nothing: it measures no GPU energy, and CPU energy (RAPL) is package-wide anyway.

Policy: wait for the lock (default, indefinitely, printing once who holds it), wait at most ``timeout_s`` then fail
with :class:`DeviceBusy` (exit 3), or skip locking (``--no-lock``). The CLI sets the policy for everything it runs
(one experiment or every run of a study) through :func:`use_policy`.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from llenergymeasure.errors import SetupError
from llenergymeasure.host.cache import cache_root


class DeviceBusy(SetupError):
    """Another process holds a GPU's lock and the wait timed out."""


@dataclass(frozen=True)
class LockPolicy:
    """``enabled``: take locks at all; ``timeout_s``: None waits forever, 0 tries once; ``notify``: called with one
    line when the lock is busy and we start waiting (the CLI prints it on stderr)."""

    enabled: bool = True
    timeout_s: float | None = None
    notify: Callable[[str], None] | None = None


_policy: contextvars.ContextVar[LockPolicy | None] = contextvars.ContextVar("lem_gpu_lock_policy", default=None)


@contextlib.contextmanager
def use_policy(policy: LockPolicy) -> Iterator[None]:
    """Run the block with ``policy`` as the lock policy of every experiment it starts."""
    token = _policy.set(policy)
    try:
        yield
    finally:
        _policy.reset(token)


def current_policy() -> LockPolicy:
    return _policy.get() or LockPolicy()


def lock_dir() -> Path:
    """``$LEM_LOCK_DIR`` when set (point every user of a shared machine at one folder, e.g. /var/lock/lem, mode
    1777), else the cache's ``locks/`` folder (which only this user's lem processes see)."""
    env = os.environ.get("LEM_LOCK_DIR")
    return Path(env) if env else cache_root() / "locks"


def lock_ids(config, host_gpus: int | None = None) -> list[str]:
    """The GPU ids a run on ``config`` locks: [] for a CPU run."""
    if config.device == "cpu":
        return []
    if config.device == "auto":
        if host_gpus is None:
            from lem_runner.contract import nvml

            from llenergymeasure.host.inventory import gpu_count

            # simulated GPUs (LEM_SIMULATED_GPU) stand in for the run's GPUs here: locked, journalled and given their
            # operating point as real ones are, though the compute runs on the CPU
            host_gpus = nvml.device_count() if nvml.simulated() else gpu_count()
        if host_gpus == 0:
            return []
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    ids = []
    for index in config.devices:
        ids.append(visible[index] if index < len(visible) else str(index))
    return ids


def _safe(gpu_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in gpu_id)[:80]


def holder_of(path: Path) -> str:
    """Who holds the lock, as its holder wrote it ('unknown' when the file is empty or unreadable)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "unknown"
    return " ".join(text.split()) or "unknown"


class GpuLock:
    """An exclusive flock on one lock file; ``acquire`` follows the policy, ``release`` (or the process ending)
    drops it."""

    def __init__(self, gpu_id: str, directory: Path | None = None) -> None:
        self.gpu_id = gpu_id
        self.path = (directory or lock_dir()) / f"gpu-{_safe(gpu_id)}.lock"
        self._fd: int | None = None

    def acquire(self, timeout_s: float | None = None, notify: Callable[[str], None] | None = None,
                poll_s: float = 0.1) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        start = time.monotonic()
        told = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                waited = time.monotonic() - start
                if timeout_s is not None and waited >= timeout_s:
                    raise DeviceBusy(
                        f"GPU {self.gpu_id} is in use by another lem ({holder_of(self.path)}); gave up after "
                        f"{timeout_s:g} s (--lock-timeout); wait longer, or run with --no-lock to measure anyway"
                    )
                if not told and notify is not None:
                    notify(f"GPU {self.gpu_id} is in use by another lem ({holder_of(self.path)}); waiting for it "
                           f"(lock {self.path}; --lock-timeout to give up, --no-lock to skip)")
                    told = True
                time.sleep(poll_s)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        command = " ".join(sys.argv)[:300] or "python"
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {stamp}: {command}\n".encode("utf-8", "replace"), 0)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> GpuLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def gpu_locks(config, policy: LockPolicy | None = None, host_gpus: int | None = None) -> Iterator[list[GpuLock]]:
    """Hold the locks of every GPU ``config`` uses (in sorted order, so two multi-GPU runs cannot deadlock)."""
    policy = policy or current_policy()
    held: list[GpuLock] = []
    try:
        if policy.enabled:
            for gpu_id in sorted(set(lock_ids(config, host_gpus))):
                lock = GpuLock(gpu_id)
                lock.acquire(policy.timeout_s, policy.notify)
                held.append(lock)
        yield held
    finally:
        for lock in reversed(held):
            lock.release()
