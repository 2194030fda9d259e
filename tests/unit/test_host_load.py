"""Issue 24 item 14: the host's CPU load over the window, from /proc, with real busy processes: another process's CPU
is counted as other, the run's own children as its own, and a run measured beside busy processes is flagged."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_config, make_environment
from fakes import FakeEnergySource, FakeInferenceBackend
from lem_runner.contract import RunRequest
from lem_runner.measure import run_measurement
from lem_runner.measurement.host_load import host_load, run_cpus, snapshot

pytestmark = pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux /proc")

BUSY = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end:\n    pass\n"


def _cpu_ticks(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return sum(int(x) for x in text[text.rfind(")") + 2:].split()[11:13])


class _Orphans:
    """``n`` busy-looping processes that are not this process's descendants (double fork: their parent exits, so
    they belong to another process tree, as another user's job would); killed by their pids on exit."""

    def __init__(self, n: int) -> None:
        script = "; ".join(f"{sys.executable} -c '{BUSY}' >/dev/null 2>&1 & echo $!" for _ in range(n))
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30, check=True).stdout
        self.pids = [int(p) for p in out.split()]

    def cpu_s(self) -> float:
        return sum(_cpu_ticks(p) for p in self.pids) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> _Orphans:
        return self

    def __exit__(self, *exc) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_other_processes_cpu_is_counted_as_other_and_flags_contention():
    n = len(run_cpus())
    with _Orphans(n) as busy:
        assert all(os.getppid() != p and os.getpid() != p for p in busy.pids)
        time.sleep(0.3)
        c0, s0 = busy.cpu_s(), snapshot()
        time.sleep(1.5)
        c1, s1 = busy.cpu_s(), snapshot()
    load = host_load(s0, s1)
    # the truth: the busy processes' own CPU time over the window, read from their /proc entries
    burned = c1 - c0
    assert burned > 0.1  # they ran (on a loaded machine they share the CPUs with everything else)
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert load.other_cpu_s >= burned - 4 * tick * n  # every other process's CPU, the busy ones' at least
    assert load.other_cpu_s <= load.window_s * n + 4 * tick * n
    assert load.other_cpu_share == pytest.approx(min(1.0, load.other_cpu_s / (load.window_s * n)))
    assert load.contended and load.cpus == n
    assert load.load_avg_1m_end is not None and load.own_cpu_s < 0.1  # this process only slept


def test_the_runs_own_children_count_as_its_own_cpu_not_as_contention():
    def used() -> float:  # the truth: this process's CPU and its reaped children's, as the kernel reports them
        return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                       resource.getrusage(resource.RUSAGE_CHILDREN)))

    u0 = used()
    s0 = snapshot()
    child = subprocess.Popen([sys.executable, "-c", BUSY.replace("60", "1.0")])
    child.wait(timeout=30)
    s1 = snapshot()
    u1 = used()
    load = host_load(s0, s1)
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert u1 - u0 > 0.05
    assert load.own_cpu_s == pytest.approx(u1 - u0, abs=0.05 + 4 * tick)


def test_a_run_measured_beside_busy_processes_records_the_load_and_is_flagged():
    # the fake engine takes no CPU of its own (its clock is fake, so the real window is as long as the loop takes);
    # it spins real CPU for 0.2 s a call so the real window lasts about a second
    backend = FakeInferenceBackend(batch_size=2, output_tokens=4, burn_cpu_s=0.2)
    request = RunRequest(experiment_id="exp", config=make_config(n_prompts=10), model_path="/m")
    with _Orphans(len(run_cpus())):
        time.sleep(0.3)
        result = run_measurement(request, backend, lambda _l: FakeEnergySource(), lambda _l: make_environment(),
                                 lambda _e: None, clock=backend.clock)
    assert "cpu_contention" in result.quality_flags
    load = result.host_load
    assert load is not None and load.contended and load.other_cpu_share >= 0.25
    assert any("CPU contention" in w for w in result.warnings)
    assert "/proc" in load.method
    from llenergymeasure.results.columns import flatten
    from llenergymeasure.results.discover import Experiment

    row = flatten(Experiment(Path("exp"), result, config=result.config))
    assert row["host_other_cpu_share"] == load.other_cpu_share and row["host_cpus"] == load.cpus
    assert "cpu_contention" in row["quality_flags"]
