"""Slurm launcher costs on a real cluster (`make slurm-up`): (1) the controller's overhead per run beyond Slurm's
own submit-to-start latency (target <= 0.5 s, DESIGN.md "Targets"), (2) the cost of polling 500 jobs in flight.

(1) A study of N runs goes through ``execute_study`` with the Slurm launcher; each job's "runner" is a stand-in that
copies a real result.json (made once by the real runner on the tiny model) into its exchange folder, so the job
itself takes ~0 s and what is left is scheduling plus lem. Per run: lem's overhead = the controller's own working
time (folder + request + script + sbatch, its share of each poll, reading the result back, manifest writes) =
the manifest's controller_overhead_s_per_experiment; Slurm's submit-to-start latency comes from sacct (Submit ->
Start, 1 s resolution) for context. Waiting for the scheduler is not lem's overhead and is not counted in it.
(2) 500 held jobs (sbatch --hold: pending, never run) are polled through SlurmLauncher.poll: scheduler calls per
poll (must be 1) and seconds per poll; then they are cancelled.
"""

from __future__ import annotations

import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

TARGET_S = 0.5
N_RUNS = 10
N_POLLED = 500


def _study(model: Path, python: str, n: int, tmp: Path):
    from llenergymeasure.config.study import StudyConfig
    from llenergymeasure.study import StudyOptions, execute_study, expand_study

    study = StudyConfig.model_validate({
        "name": "slurmbench", "sweep": {"seed": list(range(n))}, "max_consecutive_failures": 0,
        "base": {"model": str(model), "device": "cpu", "n_prompts": 1, "max_output_tokens": 2, "runner": "slurm",
                 "energy": {"sample_hz": 0, "baseline": {"mode": "off"}}, "warmup": {"n_batches": 0},
                 "slurm": {"python": python, "cpus_per_job": 1, "poll_interval_s": 0.1, "max_jobs_in_flight": n}}})
    t0 = time.perf_counter()
    outcome = execute_study(study, expand_study(study), output=tmp / "results", options=StudyOptions(no_gaps=True))
    return outcome, time.perf_counter() - t0


def overhead(tmp: Path) -> dict:
    from llenergymeasure.experiment import execute_experiment
    from llenergymeasure.launchers.local import LocalLauncher
    from tiny_model import build_tiny_llama

    model = build_tiny_llama(tmp / "tiny")
    from lem_runner.contract import ExperimentConfig

    real, _ = execute_experiment(ExperimentConfig(model=str(model), device="cpu", n_prompts=1, max_output_tokens=2,
                                                  warmup={"n_batches": 0}), output=tmp / "real",
                                 launcher=LocalLauncher())
    template = tmp / "result.json"
    template.write_text(real.model_dump_json())
    stand_in = tmp / "copy-result"  # called as: <python> -m lem_runner --config REQ --out DIR ($6)
    stand_in.write_text(f"#!/bin/sh\ncp {template} \"$6/result.json\"\n")
    stand_in.chmod(0o755)
    outcome, wall = _study(model, str(stand_in), N_RUNS, tmp)
    m = outcome.manifest
    if m.count("done") != len(m.entries):
        raise SystemExit(f"bench/slurm.py: runs failed: {[e.error for e in m.entries if e.status != 'done'][:2]}")
    ids = [e.slurm_job_id for e in m.entries]
    rows = _sacct(ids, "JobID,Submit,Start,End")
    latency = [(_t(r[2]) - _t(r[1])) for r in rows.values() if r[1] and r[2]]
    return {"runs": len(m.entries), "done": m.count("done"), "study_wall_s": round(wall, 3),
            "controller_overhead_s_per_run": m.controller_overhead_s_per_experiment,
            "slurm_submit_to_start_s_median": statistics.median(latency) if latency else None,
            "slurm_submit_to_start_s_max": max(latency) if latency else None}


def polling() -> dict:
    from llenergymeasure.launchers.slurm import SlurmCommands, SlurmLauncher, SubmittedJob

    commands = SlurmCommands()
    t0 = time.perf_counter()
    ids = [commands.sbatch(["sbatch", "--parsable", "--hold", "-o", "/dev/null", "-J", "lem-bench-held",
                            "--wrap", "true"]) for _ in range(N_POLLED)]
    submit_s = time.perf_counter() - t0
    launcher = SlurmLauncher(commands)
    jobs = [SubmittedJob(i, Path("/nonexistent"), time.time()) for i in ids]
    try:
        times, calls = [], []
        for _ in range(10):
            before = commands.calls
            t = time.perf_counter()
            states = launcher.poll(jobs)
            times.append(time.perf_counter() - t)
            calls.append(commands.calls - before)
            assert len(states) == N_POLLED and all(s.state == "PENDING" for s in states.values()), states
    finally:
        for k in range(0, len(ids), 100):
            commands.cancel(ids[k:k + 100])
    return {"jobs_in_flight": N_POLLED, "scheduler_calls_per_poll": max(calls),
            "poll_s_median": round(statistics.median(times), 4), "poll_s_max": round(max(times), 4),
            "sbatch_s_per_job": round(submit_s / N_POLLED, 4)}


def _sacct(ids, fields):
    for _ in range(100):
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "-o", fields], capture_output=True,
                             text=True).stdout
        rows = {line.split("|")[0]: line.split("|") for line in out.splitlines() if line}
        if len(rows) >= len(ids):
            return rows
        time.sleep(0.2)
    return rows


def _t(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def main() -> int:
    if shutil.which("sbatch") is None:
        print("bench/slurm.py: no Slurm here (make slurm-up)")
        return 3
    with tempfile.TemporaryDirectory() as tmp:
        over = overhead(Path(tmp))
    poll = polling()
    record = {"benchmark": "slurm", "date": datetime.now(UTC).isoformat(timespec="seconds"), "overhead": over,
              "polling": poll, "target_s": TARGET_S,
              "machine": {"platform": platform.platform(), "python": platform.python_version()}}
    out = ROOT / "bench" / "results" / f"slurm-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2), encoding="utf-8")
    o = over["controller_overhead_s_per_run"]
    verdict = "meets" if o is not None and o <= TARGET_S else "falls short"
    print(f"slurm: {over['done']}/{over['runs']} runs, controller overhead {o:.3f} s per run beyond Slurm's "
          f"submit-to-start (median {over['slurm_submit_to_start_s_median']} s) (target <= {TARGET_S} s): {verdict}; "
          f"polling {poll['jobs_in_flight']} jobs in flight: {poll['scheduler_calls_per_poll']} scheduler call, "
          f"{poll['poll_s_median'] * 1000:.0f} ms per poll (max {poll['poll_s_max'] * 1000:.0f} ms); wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
