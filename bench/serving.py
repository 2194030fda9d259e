"""Load-generator accuracy against a stub OpenAI server on loopback that answers at once (tests/serving_stub.py).

Poisson arrivals at ``--rate`` (default 160 req/s: 20x the highest rate the CI tests use), ``--n`` requests:
- goodness of fit: the inter-arrival times the generator achieved (its submit times, each taken just before the
  request goes to the socket) against the exponential distribution of the offered rate, Kolmogorov-Smirnov (target
  p > 0.01 over >= 500 arrivals); the same test on the times the *server* saw (its own event-loop clock) is kept
  beside it — with the stub under SCHED_BATCH (the default, so it does not preempt the generator) its stamps come
  late in bursts, without it the generator is preempted: each setting distorts one side;
- achieved rate within 2 % of offered: (n - 1) / (last - first submission) against the schedule's own rate (the
  realised Poisson draw), and against the nominal rate for reference (a Poisson sample of n has a CV of 1/sqrt(n));
- scheduling lag: submission - scheduled time, p99 (target <= 1 ms; docs/method.md "Scheduling lag");
- the context the lag depends on: the load average and the whole machine's CPU busy share over the window
  (/proc/stat), this process's involuntary context switches (the kernel took the CPU from it), and the floor — the
  same schedule kept by a bare asyncio sleep loop with no HTTP at all, run just before (what the OS allows now).
A run passes when all three hold in it (the rule as first written, with the fit at the server's clock:
``meets_as_written``); ``meets_revised`` judges the fit on the generator's submit times instead (BENCHMARKS.md says
why the rule changed and reports every run against both). Writes bench/results/serving-<time>.json; every run is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from lem_runner.measurement.latency import percentile  # noqa: E402
from lem_runner.serving.client import LoadSpec, _at, run_load  # noqa: E402
from lem_runner.serving.schedule import PlannedRequest, arrival_offsets  # noqa: E402
from scipy import stats  # noqa: E402


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return sum(v) - idle, sum(v)


def _batch() -> None:
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def _floor(offsets: list[float]) -> list[float]:
    """Lags (ms) of the same schedule kept by the generator's own wait (client._at) with no request sent."""
    async def go() -> list[float]:
        t0, out = time.perf_counter(), []
        for o in offsets:
            await _at(t0 + o, time.perf_counter)
            out.append((time.perf_counter() - t0 - o) * 1000)
        return sorted(out)
    return asyncio.run(go())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=160.0)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-stub-batch", dest="stub_batch", action="store_false",
                        help="run the stub under the normal policy (it then preempts the generator when woken)")
    args = parser.parse_args()

    offsets = arrival_offsets("poisson", args.rate, 1.0, args.n, random.Random(args.seed))
    load_before = os.getloadavg()
    floor = _floor(offsets[: min(len(offsets), 500)])
    plan = [PlannedRequest(i, t, [11, 12, 13], 1) for i, t in enumerate(offsets)]
    # the stub in its own process, so it does not share this process's interpreter lock with the load generator, and
    # SCHED_BATCH (unprivileged), so that each request waking it does not preempt the generator inside its send()
    # (seen: 3.3 ms a send, half the wall time, when the stub was woken on the generator's CPU of a busy machine)
    stub = subprocess.Popen([sys.executable, str(ROOT / "tests" / "serving_stub.py")], stdout=subprocess.PIPE, text=True,
                            preexec_fn=_batch if args.stub_batch else None)
    try:
        port = int(stub.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        spec = LoadSpec(f"{base}/v1", "stub", None, None, 30.0, False, {"temperature": 0})
        run_load(spec, plan[:20])  # connections and code paths warm, outside the measurement
        with urllib.request.urlopen(f"{base}/arrivals") as resp:
            skip = len(json.loads(resp.read()))
        busy0, total0 = _cpu_times()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        records, _ = run_load(spec, plan)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        busy1, total1 = _cpu_times()
        with urllib.request.urlopen(f"{base}/arrivals") as resp:
            server_times = sorted(json.loads(resp.read())[skip:])
    finally:
        stub.terminate()
        stub.wait(10)
    ok = sum(r.ok for r in records)
    gaps = [b - a for a, b in zip(server_times, server_times[1:])]
    ks = stats.kstest(gaps, "expon", args=(0, 1 / args.rate))
    submits = sorted(r.submit for r in records)
    achieved = (len(submits) - 1) / (submits[-1] - submits[0])
    scheduled = (len(offsets) - 1) / offsets[-1]
    lags = sorted((r.submit - r.scheduled) * 1000 for r in records)
    client_gaps = [b - a for a, b in zip(submits, submits[1:])]
    ks_client = stats.kstest(client_gaps, "expon", args=(0, 1 / args.rate))
    window = submits[-1] - submits[0]
    report = {
        "rate": args.rate, "n": args.n, "ok": ok, "seed": args.seed, "stub_sched_batch": args.stub_batch,
        "ks_statistic": ks.statistic, "ks_pvalue": ks.pvalue, "ks_target": "> 0.01",
        "achieved_rate_rps": achieved, "scheduled_rate_rps": scheduled,
        "achieved_vs_scheduled": achieved / scheduled, "achieved_vs_nominal": achieved / args.rate,
        "rate_target": "within 2 % of the schedule's rate",
        "lag_p50_ms": percentile(lags, 50), "lag_p99_ms": percentile(lags, 99), "lag_max_ms": lags[-1],
        "lag_target_p99_ms": 1.0,
        "ks_pvalue_client": ks_client.pvalue,
        "floor_lag_p50_ms": percentile(floor, 50), "floor_lag_p99_ms": percentile(floor, 99),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpus": os.cpu_count(),
        "machine_cpu_busy": (busy1 - busy0) / (total1 - total0) if total1 > total0 else None,
        "client_cpu_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
        "client_involuntary_switches_per_s": (ru1.ru_nivcsw - ru0.ru_nivcsw) / window if window > 0 else None,
        # the rule as first written (2bdbc22): the fit of the times the server saw; the revised rule (03fda12, after
        # the runs were in): the fit of the generator's own submit times, since the stub's clock under SCHED_BATCH
        # stamps arrivals late in bursts. Both are kept; BENCHMARKS.md reports each run against the first
        "meets_as_written": bool(ks.pvalue > 0.01 and abs(achieved / scheduled - 1) <= 0.02
                                 and percentile(lags, 99) <= 1.0),
        "meets_revised": bool(ks_client.pvalue > 0.01 and abs(achieved / scheduled - 1) <= 0.02
                              and percentile(lags, 99) <= 1.0),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    out = ROOT / "bench" / "results" / f"serving-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
