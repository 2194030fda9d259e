"""Set a run's GPU operating point (the ``gpu:`` section) on the host and put it back afterwards, on every path.

Order of work: restore any journal a dead lem left on these GPUs; open the devices; check every requested value
against what each device supports (nothing changed yet: a bad value is a ConfigError naming the field and the
allowed range); read what is set now; write a restore journal per device; apply; read back. When the run ends —
result, failure, Ctrl-C or SIGTERM — restore and delete the journals. If NVML refuses a change (no permission: it
needs root) the changes already made are undone before the one-line SetupError (exit 3). NVML has no getter for a
clock lock, so "restore" for clocks means resetting the lock (nvmlDeviceReset*LockedClocks): a lock some other tool
had set before lem is not brought back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from lem_runner.contract import GpuConfig, GpuSetting

from llenergymeasure.errors import ConfigError, SetupError
from llenergymeasure.gpustate.device import GpuControl, GpuStateError, open_nvml
from llenergymeasure.gpustate.journal import (
    Journal,
    find_journal,
    new_journal,
    remove_journal,
    write_journal,
)

Opener = Callable[[str], GpuControl]
Notify = Callable[[str], None]

#: applied in this order, undone in the reverse
ORDER = ("persistence_mode", "power_limit", "memory_clocks", "sm_clocks")
_PERMISSION_HINT = ("NVML's device commands need root: run lem as root (sudo -E), or drop the gpu: section")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _span(values: list[int]) -> tuple[int, int] | None:
    return (min(values), max(values)) if values else None


def validate(gpu: GpuConfig, dev: GpuControl) -> None:
    """Every requested value within what ``dev`` supports, or ConfigError naming the field and the range. Reads
    only; a device that cannot report its limits is a SetupError."""
    try:
        if gpu.power_limit_w is not None:
            lo, hi = dev.power_limit_range_w()
            if not lo <= gpu.power_limit_w <= hi:
                raise ConfigError(f"gpu.power_limit_w: {gpu.power_limit_w:g} W is outside what GPU {dev.id} allows "
                                  f"({lo:g}–{hi:g} W)")
        mem_lock = GpuConfig.clock_range(gpu.locked_memory_clock_mhz)
        sm_lock = GpuConfig.clock_range(gpu.locked_sm_clock_mhz)
        if mem_lock is None and sm_lock is None:
            return
        mem_clocks = dev.supported_memory_clocks_mhz()
        if mem_lock is not None:
            span = _span(mem_clocks)
            if span is None or not (span[0] <= mem_lock[0] and mem_lock[1] <= span[1]):
                raise ConfigError(f"gpu.locked_memory_clock_mhz: {_fmt(mem_lock)} MHz is outside what GPU {dev.id} "
                                  f"supports ({_fmt(span) if span else 'no supported memory clocks reported'} MHz)")
        if sm_lock is not None:
            usable = [m for m in mem_clocks if mem_lock is None or mem_lock[0] <= m <= mem_lock[1]] or mem_clocks
            span = _span([c for m in usable for c in dev.supported_sm_clocks_mhz(m)])
            if span is None or not (span[0] <= sm_lock[0] and sm_lock[1] <= span[1]):
                raise ConfigError(f"gpu.locked_sm_clock_mhz: {_fmt(sm_lock)} MHz is outside what GPU {dev.id} "
                                  f"supports ({_fmt(span) if span else 'no supported graphics clocks reported'} MHz)")
    except GpuStateError as exc:
        raise SetupError(f"gpu: cannot read what GPU {dev.id} supports: {exc}") from None


def _fmt(span: tuple[int, int]) -> str:
    return str(span[0]) if span[0] == span[1] else f"{span[0]}–{span[1]}"


def _planned(gpu: GpuConfig) -> list[str]:
    wanted = {"persistence_mode": gpu.persistence_mode is not None, "power_limit": gpu.power_limit_w is not None,
              "memory_clocks": gpu.locked_memory_clock_mhz is not None, "sm_clocks": gpu.locked_sm_clock_mhz is not None}
    return [c for c in ORDER if wanted[c]]


def restore(dev: GpuControl, journal: Journal) -> list[str]:
    """Undo what ``journal`` lists, in reverse order, trying every item; what was done, in words. Raises
    GpuStateError (naming every item that failed) after trying them all."""
    done, failed = [], []
    for change in reversed([c for c in ORDER if c in journal.changes]):
        try:
            if change == "sm_clocks":
                dev.reset_sm_clocks()
                done.append("SM clock lock reset")
            elif change == "memory_clocks":
                dev.reset_memory_clocks()
                done.append("memory clock lock reset")
            elif change == "power_limit" and journal.previous_power_limit_w is not None:
                dev.set_power_limit_w(journal.previous_power_limit_w)
                done.append(f"power limit back to {journal.previous_power_limit_w:g} W")
            elif change == "persistence_mode" and journal.previous_persistence_mode is not None:
                dev.set_persistence_mode(journal.previous_persistence_mode)
                done.append(f"persistence mode back {'on' if journal.previous_persistence_mode else 'off'}")
        except GpuStateError as exc:
            failed.append(f"{change}: {exc}")
    if failed:
        raise GpuStateError("; ".join(failed), permission=False)
    return done


def restore_from_journal(journal: Journal, opener: Opener = open_nvml) -> str:
    """Restore a GPU from a journal whose writer is gone and delete it; one line saying what was done. Raises
    GpuStateError (journal kept) when the GPU cannot be restored."""
    dev = opener(journal.gpu)
    if journal.uuid and dev.uuid and dev.uuid != journal.uuid:  # renumbered since (a reboot): find it by UUID
        dev = opener(journal.uuid)
    done = restore(dev, journal)
    remove_journal(journal)
    return (f"GPU {journal.gpu}: restored from the journal left by {journal.describe()}, which ended without "
            f"restoring it: {', '.join(done) or 'nothing to undo'}")


def recover_stale(gpu_ids: list[str], opener: Opener = open_nvml, notify: Notify = _stderr,
                  directory: Path | None = None) -> list[Journal]:
    """Restore every GPU in ``gpu_ids`` whose journal's writer is dead (saying so); return the journals whose writer
    is alive (another lem's operating point, left untouched)."""
    live = []
    for gpu in gpu_ids:
        try:
            journal = find_journal(gpu, directory)
        except ValueError as exc:
            raise SetupError(str(exc)) from None
        if journal is None:
            continue
        if journal.writer_alive and journal.pid != os.getpid():
            live.append(journal)
            continue
        try:
            notify(restore_from_journal(journal, opener))
        except GpuStateError as exc:
            raise SetupError(f"GPU {gpu}: a journal left by {journal.describe()} says its operating point was changed,"
                             f" and restoring it failed: {exc}; journal kept at {journal.path}") from None
    return live


@contextlib.contextmanager
def _quiet_signals() -> Iterator[None]:
    """Hold off Ctrl-C and SIGTERM while a restore runs (milliseconds), so a second press cannot cut it short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _sigterm_like_ctrl_c() -> Iterator[None]:
    """SIGTERM handled as Ctrl-C (whatever handler SIGINT has), so the finally blocks that restore the GPU run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def term(signum, frame):
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class _Applied:
    def __init__(self, dev: GpuControl, journal: Journal) -> None:
        self.dev, self.journal, self.done = dev, journal, []


def _apply_one(gpu: GpuConfig, a: _Applied) -> GpuSetting:
    dev, j = a.dev, a.journal
    sm = GpuConfig.clock_range(gpu.locked_sm_clock_mhz)
    mem = GpuConfig.clock_range(gpu.locked_memory_clock_mhz)
    for change in j.changes:
        if change == "persistence_mode":
            dev.set_persistence_mode(bool(gpu.persistence_mode))
        elif change == "power_limit":
            dev.set_power_limit_w(float(gpu.power_limit_w))  # type: ignore[arg-type]
        elif change == "memory_clocks":
            dev.lock_memory_clocks(*mem)  # type: ignore[misc]
        elif change == "sm_clocks":
            dev.lock_sm_clocks(*sm)  # type: ignore[misc]
        a.done.append(change)
    return GpuSetting(
        gpu=dev.id, uuid=dev.uuid,
        requested_power_limit_w=gpu.power_limit_w,
        applied_power_limit_w=dev.power_limit_w() if gpu.power_limit_w is not None else None,
        previous_power_limit_w=j.previous_power_limit_w,
        requested_sm_clock_mhz=sm, requested_memory_clock_mhz=mem,
        sm_clock_after_lock_mhz=dev.sm_clock_mhz() if sm else None,
        memory_clock_after_lock_mhz=dev.memory_clock_mhz() if mem else None,
        requested_persistence_mode=gpu.persistence_mode,
        applied_persistence_mode=dev.persistence_mode() if gpu.persistence_mode is not None else None,
        previous_persistence_mode=j.previous_persistence_mode,
    )


def _undo(applied: list[_Applied], notify: Notify) -> bool:
    """Restore every device (only what was applied); delete the journals of those restored. True when all were."""
    ok = True
    with _quiet_signals():
        for a in reversed(applied):
            partial = Journal(**{**a.journal.__dict__, "changes": list(a.done)})
            try:
                restore(a.dev, partial)
            except GpuStateError as exc:
                ok = False
                notify(f"GPU {a.dev.id}: could not restore its operating point ({exc}); the journal stays at "
                       f"{a.journal.path}: run `lem doctor --restore-gpu`")
                continue
            remove_journal(a.journal)
    return ok


@contextlib.contextmanager
def operating_point(gpu: GpuConfig, gpu_ids: list[str], opener: Opener | None = None, notify: Notify | None = None,
                    directory: Path | None = None) -> Iterator[list[GpuSetting]]:
    """Hold ``gpu``'s operating point on ``gpu_ids`` for the block; yield what was applied (one GpuSetting per GPU,
    in ``gpu_ids`` order; [] when the section asks for nothing). Restores on every way out of the block."""
    opener = opener or open_nvml
    notify = notify or _stderr
    live = recover_stale(gpu_ids, opener, notify, directory) if gpu_ids else []
    if not gpu.requested or not gpu_ids:
        for j in live:
            notify(f"GPU {j.gpu}: its operating point is held by another lem ({j.describe()}); measuring under it")
        yield []
        return
    if live:
        j = live[0]
        raise SetupError(f"GPU {j.gpu}: another lem holds its operating point ({j.describe()}; journal {j.path}); "
                         "wait for it to finish (it restores the GPU), or drop this run's gpu: section")
    try:
        devices = [opener(g) for g in gpu_ids]
    except GpuStateError as exc:
        raise SetupError(f"gpu: setting the operating point needs NVML on the host: {exc}") from None
    for dev in devices:
        validate(gpu, dev)
    changes = _planned(gpu)
    applied: list[_Applied] = []
    try:
        for dev in devices:
            journal = new_journal(dev.id, dev.uuid, changes,
                                  dev.power_limit_w() if "power_limit" in changes else None,
                                  dev.persistence_mode() if "persistence_mode" in changes else None)
            write_journal(journal, directory)
            applied.append(_Applied(dev, journal))
    except GpuStateError as exc:
        _undo(applied, notify)
        raise SetupError(f"gpu: cannot read GPU state before changing it: {exc}") from None
    except OSError as exc:
        _undo(applied, notify)
        raise SetupError(f"gpu: cannot write the restore journal ({exc}); nothing was changed") from None
    except BaseException:  # Ctrl-C while the journals are written: nothing is applied yet; drop them
        _undo(applied, notify)
        raise
    with _sigterm_like_ctrl_c():
        settings = []
        try:
            for a in applied:
                settings.append(_apply_one(gpu, a))
        except GpuStateError as exc:
            restored = _undo(applied, notify)
            field = {"persistence_mode": "gpu.persistence_mode", "power_limit": "gpu.power_limit_w",
                     "memory_clocks": "gpu.locked_memory_clock_mhz", "sm_clocks": "gpu.locked_sm_clock_mhz"}
            failing = next((field[c] for a in applied for c in a.journal.changes if c not in a.done), "gpu")
            hint = f"; {_PERMISSION_HINT}" if exc.permission else ""
            state = "nothing was changed" if restored else "some changes could not be undone (see above)"
            raise SetupError(f"{failing}: NVML refused the change ({exc}){hint}; {state}") from None
        except BaseException:
            _undo(applied, notify)
            raise
        try:
            yield settings
        finally:
            _undo(applied, notify)


def restore_host(opener: Opener = open_nvml, directory: Path | None = None) -> tuple[list[str], list[str]]:
    """`lem doctor --restore-gpu`: restore every GPU of this host whose journal's writer is gone. Returns (lines
    saying what was done or left alone, lines saying what failed)."""
    from llenergymeasure.gpustate.journal import host_journals, read_journal

    done, failed = [], []
    for path in host_journals(directory):
        try:
            journal = read_journal(path)
        except ValueError as exc:
            failed.append(str(exc))
            continue
        if journal is None:
            continue
        if journal.writer_alive and journal.pid != os.getpid():
            done.append(f"GPU {journal.gpu}: left alone, its lem is still running ({journal.describe()})")
            continue
        try:
            done.append(restore_from_journal(journal, opener))
        except GpuStateError as exc:
            hint = f"; {_PERMISSION_HINT}" if exc.permission else ""
            failed.append(f"GPU {journal.gpu}: restoring from {path} failed: {exc}{hint}")
    return done, failed


def check_config(gpu: GpuConfig, gpu_ids: list[str], opener: Opener = open_nvml) -> str | None:
    """`lem config validate`: check ``gpu`` against this host's devices without changing anything (ConfigError when a
    value is out of range). Returns a note when it could not be checked here (no GPU, no NVML), else None."""
    if not gpu.requested:
        return None
    if not gpu_ids:
        return "gpu: not checked against a device (no NVIDIA GPU visible here); `lem run` checks it on the GPU host"
    for gpu_id in gpu_ids:
        try:
            dev = opener(gpu_id)
        except GpuStateError as exc:
            return f"gpu: not checked against a device ({exc}); `lem run` checks it on the GPU host"
        validate(gpu, dev)
    return None
