"""How busy the host was over the window, from /proc: CPU taken by other processes, hypervisor steal, load average.

A run on a CPU that other processes are using is slower (the same demo gave 2.0 tok/s on a busy machine and 67 tok/s
idle) and nothing in its figures would say so. Two snapshots, at the window's start and end, give over the CPUs the
run may use (its affinity): the busy time of every process (``/proc/stat`` per-CPU user + nice + system + irq +
softirq), less this run's own (the runner and every descendant, ``/proc/<pid>/stat`` utime + stime + the reaped
children's cutime + cstime), so another process's CPU is what is left; the steal share (time the hypervisor gave
another guest); and the 1-minute load average at each end. Resolution: the kernel's clock tick (USER_HZ, 10 ms).
Other processes on CPUs outside the run's affinity are not counted (they do not compete for its CPUs).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lem_runner.contract.host_load import HostLoad

#: a run is flagged cpu_contention when other processes used at least this share of its CPUs over the window ...
CONTENDED_OTHER_SHARE = 0.25
#: ... or the hypervisor stole at least this share of their time
CONTENDED_STEAL_SHARE = 0.05

METHOD = ("/proc snapshots at the window's start and end, over the CPUs the run may use (sched_getaffinity): other "
          "processes' CPU = busy time (/proc/stat user + nice + system + irq + softirq) - this run's own (runner and "
          "descendants: utime + stime + cutime + cstime); steal from /proc/stat; 1-min load average from "
          f"/proc/loadavg; flagged cpu_contention when others used >= {CONTENDED_OTHER_SHARE:.0%} of the run's CPUs or "
          f"steal >= {CONTENDED_STEAL_SHARE:.0%}; resolution one clock tick (USER_HZ)")


@dataclass(frozen=True)
class LoadSnapshot:
    wall_s: float  # time.monotonic
    busy_ticks: int  # every process's CPU on the run's CPUs
    steal_ticks: int
    total_ticks: int
    own_ticks: int  # the run's process tree
    load_avg_1m: float | None


def _cpu_lines(proc: Path, cpus: set[int]) -> tuple[int, int, int]:
    """(busy, steal, total) clock ticks summed over ``cpus`` from /proc/stat."""
    busy = steal = total = 0
    for line in (proc / "stat").read_text().splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        v = [int(x) for x in values[:8]] + [0] * (8 - len(values[:8]))
        user, nice, system, idle, iowait, irq, softirq, st = v
        busy += user + nice + system + irq + softirq
        steal += st
        total += user + nice + system + idle + iowait + irq + softirq + st
    return busy, steal, total


def _stat_fields(proc: Path, pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state is [0], ppid [1], utime [11] ... cstime [14])."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def _own_ticks(proc: Path, root: int) -> int:
    """CPU ticks of ``root`` and every descendant (alive, and reaped into their parents' cutime/cstime)."""
    children: dict[int, list[int]] = {}
    fields: dict[int, list[str]] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit() and (f := _stat_fields(proc, int(entry.name))) is not None:
            fields[int(entry.name)] = f
            children.setdefault(int(f[1]), []).append(int(entry.name))
    ticks, stack = 0, [root]
    while stack:
        pid = stack.pop()
        f = fields.get(pid)
        if f is not None:
            ticks += sum(int(x) for x in f[11:15])
        stack.extend(children.get(pid, []))
    return ticks


def _load_avg(proc: Path) -> float | None:
    try:
        return float((proc / "loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def run_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def snapshot(root: int | None = None, cpus: Iterable[int] | None = None, proc: Path = Path("/proc")) -> LoadSnapshot | None:
    """The host's CPU counters now, ``root`` (default: this process) and its descendants counted as the run's own;
    None where /proc is not readable (not Linux)."""
    import time

    cpu_set = set(cpus) if cpus is not None else run_cpus()
    try:
        busy, steal, total = _cpu_lines(proc, cpu_set)
        own = _own_ticks(proc, os.getpid() if root is None else root)
    except (OSError, ValueError):
        return None
    return LoadSnapshot(time.monotonic(), busy, steal, total, own, _load_avg(proc))


def host_load(start: LoadSnapshot | None, end: LoadSnapshot | None, cpus: int | None = None) -> HostLoad | None:
    """The window's host load from its two snapshots (None without both)."""
    if start is None or end is None or end.wall_s <= start.wall_s:
        return None
    n = cpus or len(run_cpus())
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    wall = end.wall_s - start.wall_s
    total = end.total_ticks - start.total_ticks
    own_s = max(0, end.own_ticks - start.own_ticks) / hz
    other_s = max(0.0, (end.busy_ticks - start.busy_ticks) / hz - own_s)
    other_share = min(1.0, other_s / (wall * n))
    steal_share = (end.steal_ticks - start.steal_ticks) / total if total > 0 else 0.0
    contended = other_share >= CONTENDED_OTHER_SHARE or steal_share >= CONTENDED_STEAL_SHARE
    return HostLoad(cpus=n, window_s=wall, own_cpu_s=own_s, other_cpu_s=other_s, other_cpu_share=other_share,
                    steal_share=steal_share, load_avg_1m_start=start.load_avg_1m, load_avg_1m_end=end.load_avg_1m,
                    contended=contended, method=METHOD)


def contention_message(load: HostLoad) -> str:
    """The cpu_contention warning: what the host was doing, and what to distrust."""
    parts = [f"other processes used {load.other_cpu_s:.1f} CPU-s ({load.other_cpu_share:.0%} of the run's "
             f"{load.cpus} CPUs over the {load.window_s:.1f} s window)"]
    if load.steal_share >= CONTENDED_STEAL_SHARE:
        parts.append(f"the hypervisor stole {load.steal_share:.0%} of their time")
    if load.load_avg_1m_end is not None:
        parts.append(f"1-min load average {load.load_avg_1m_end:.1f}")
    return ("the run was measured under CPU contention: " + "; ".join(parts) + ": throughput, latency and energy per "
            "token reflect a shared machine; re-run on a quiet one")
