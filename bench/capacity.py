"""SLO capacity search accuracy against a server whose capacity is known (serving.capacity; docs/method.md,
"Serving", capacity search).

The stub OpenAI server of tests/serving_stub.py with ``slots``: at most ``slots`` requests answered at once (FIFO
queue), each holding its slot for exactly ttft_s + (tokens - 1) x token_delay_s. lem's runner (run_serving, a user's
endpoint, no energy source) searches the highest constant rate at which >= good_share of ``n`` requests get their
first token within the TTFT bound. The true capacity is serving_stub.slot_capacity: a direct simulation of that FIFO
server, independent of lem's search and its figures.

Target, fixed before any run: in every case the capacity found is within 5 % of the true one, in at most 8 probes
(tolerance 0.05, max_probes 8, brackets up to 16x wide). Each case is repeated ``--reps`` times (the machine's timing
noise moves a probe's verdict near the capacity); the row reports the worst error and the most probes over all.
Writes bench/results/capacity-<time>.json; every run is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from lem_runner.contract.config import ExperimentConfig  # noqa: E402
from lem_runner.contract.protocol import RunRequest  # noqa: E402
from lem_runner.energy.null import NullEnergySource  # noqa: E402
from lem_runner.measurement.environment import collect_environment  # noqa: E402
from lem_runner.serving.run import run_serving  # noqa: E402
from lem_runner.session import HeldEngine  # noqa: E402
from serving_stub import StubServer, slot_capacity  # noqa: E402

TARGET_ERROR, TARGET_PROBES = 0.05, 8
#: (slots, ttft_s, token_delay_s, tokens, n requests, good share, TTFT bound ms, rate_min, rate_max)
CASES = [
    (4, 0.02, 0.01, 9, 80, 0.9, 40, 10, 160),
    (8, 0.02, 0.01, 9, 120, 0.9, 40, 20, 200),
    (2, 0.02, 0.01, 9, 60, 0.75, 60, 4, 40),
]


class _Phase:
    name = "load"


def run_case(case: tuple) -> dict:
    slots, ttft_s, token_s, tokens, n, share, bound_ms, rate_min, rate_max = case
    truth = slot_capacity(slots, ttft_s + (tokens - 1) * token_s, n, share, bound_ms / 1000, ttft_s)
    with StubServer(ttft_s=ttft_s, token_delay_s=token_s, slots=slots) as stub, tempfile.TemporaryDirectory() as tmp:
        cfg = ExperimentConfig(
            name="bench", model="stub", scenario="serving", device="cpu", max_output_tokens=tokens,
            force_output_length=True, energy={"baseline": {"mode": "off"}, "timeseries": False},
            serving={"endpoint": stub.base_url, "warmup_requests": 1, "arrival": "constant", "n_requests": n,
                     "slo": {"ttft_ms": bound_ms},
                     "capacity": {"good_share": share, "rate_min": rate_min, "rate_max": rate_max,
                                  "tolerance": TARGET_ERROR, "max_probes": TARGET_PROBES}})
        t0 = time.perf_counter()
        result = run_serving(RunRequest(experiment_id="bench", config=cfg, model_path="/nonexistent"),
                             energy_for=lambda kind: NullEnergySource("benchmark: no energy source"),
                             environment_for=lambda libs, kind, cuda: collect_environment(libs, [], False, None, None),
                             emit=lambda event: None, phase=_Phase(), out_dir=Path(tmp), held=HeldEngine())
        wall = time.perf_counter() - t0
    c = result.serving.capacity
    error = abs(c.capacity - truth) / truth if c.capacity is not None else None
    return {"case": dict(zip(("slots", "ttft_s", "token_delay_s", "tokens", "n", "good_share", "ttft_bound_ms",
                              "rate_min", "rate_max"), case)),
            "true_capacity_rps": truth, "found_rps": c.capacity, "found": c.found, "rel_error": error,
            "probes": len(c.probes), "wall_s": wall,
            "probe_log": [(p.load, p.verdict, p.good_share) for p in c.probes],
            "meets": error is not None and error <= TARGET_ERROR and len(c.probes) <= TARGET_PROBES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="runs of each case")
    args = ap.parse_args()
    runs = []
    for case in CASES:
        for _ in range(args.reps):
            runs.append(run_case(case))
            r = runs[-1]
            err = "-" if r["rel_error"] is None else f"{r['rel_error']:.1%}"
            print(f"{r['case']['slots']} slots: true {r['true_capacity_rps']:.2f} req/s, found {r['found_rps']} "
                  f"({err}) in {r['probes']} probes, {r['wall_s']:.1f} s")
    errors = [r["rel_error"] for r in runs if r["rel_error"] is not None]
    out = {"target": {"rel_error_max": TARGET_ERROR, "probes_max": TARGET_PROBES}, "runs": runs,
           "worst_rel_error": max(errors) if len(errors) == len(runs) else None,
           "most_probes": max(r["probes"] for r in runs), "meets": all(r["meets"] for r in runs),
           "load_average": os.getloadavg(),
           "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}}
    path = ROOT / "bench" / "results" / f"capacity-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}: {'meets' if out['meets'] else 'falls short of'} the target")


if __name__ == "__main__":
    main()
