"""Load-generator accuracy against a stub OpenAI server on loopback that answers at once (tests/serving_stub.py).

Poisson arrivals at ``--rate`` (default 160 req/s: 20x the highest rate the CI tests use), ``--n`` requests:
- goodness of fit: the inter-arrival times the *server* saw (its own event-loop clock) against the exponential
  distribution of the offered rate, Kolmogorov-Smirnov (target p > 0.01 over >= 500 arrivals);
- achieved rate within 2 % of offered: (n - 1) / (last - first submission) against the schedule's own rate (the
  realised Poisson draw), and against the nominal rate for reference (a Poisson sample of n has a CV of 1/sqrt(n));
- scheduling lag: submission - scheduled time, p99 (target <= 1 ms).
Writes bench/results/serving-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from lem_runner.measurement.latency import percentile  # noqa: E402
from lem_runner.serving.client import LoadSpec, run_load  # noqa: E402
from lem_runner.serving.schedule import PlannedRequest, arrival_offsets  # noqa: E402
from scipy import stats  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=160.0)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    offsets = arrival_offsets("poisson", args.rate, 1.0, args.n, random.Random(args.seed))
    plan = [PlannedRequest(i, t, [11, 12, 13], 1) for i, t in enumerate(offsets)]
    # the stub in its own process, so it does not share this process's interpreter lock with the load generator
    stub = subprocess.Popen([sys.executable, str(ROOT / "tests" / "serving_stub.py")], stdout=subprocess.PIPE, text=True)
    try:
        port = int(stub.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        spec = LoadSpec(f"{base}/v1", "stub", None, None, 30.0, False, {"temperature": 0})
        run_load(spec, plan[:20])  # connections and code paths warm, outside the measurement
        with urllib.request.urlopen(f"{base}/arrivals") as resp:
            skip = len(json.loads(resp.read()))
        records, _ = run_load(spec, plan)
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
    report = {
        "rate": args.rate, "n": args.n, "ok": ok, "seed": args.seed,
        "ks_statistic": ks.statistic, "ks_pvalue": ks.pvalue, "ks_target": "> 0.01",
        "achieved_rate_rps": achieved, "scheduled_rate_rps": scheduled,
        "achieved_vs_scheduled": achieved / scheduled, "achieved_vs_nominal": achieved / args.rate,
        "rate_target": "within 2 % of the schedule's rate",
        "lag_p50_ms": percentile(lags, 50), "lag_p99_ms": percentile(lags, 99), "lag_max_ms": lags[-1],
        "lag_target_p99_ms": 1.0,
        "meets": bool(ks.pvalue > 0.01 and abs(achieved / scheduled - 1) <= 0.02 and percentile(lags, 99) <= 1.0),
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
