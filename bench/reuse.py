"""Engine reuse: one study of the tiny model on the vLLM CPU image, run with ``engine_reuse: true`` and ``false``,
alternated. Reports the wall-time ratio (on / off; target <= 0.35, DESIGN.md "Targets"), the on-case's wall time
against its floor (target <= 1.25 x (its engine loads + the runner-measured windows and warmups + gaps)), and whether
tok/s, TTFT and ITL of runs on a reused engine agree with cold runs of the same point within the cycles' 95 % CI.

Every point shares one engine (they differ in run fields only: prompts and output length), so the on-case loads
it once per cycle (a cycle's engines are loaded afresh, study/engines.py) and the off-case once per run.

``--scenario serving``: the same comparison for a serving study, a sweep of the Poisson rate (2, 4, 8, 16 req/s)
against lem's transformers server on the PyTorch path (runner local): the on-case starts one server per cycle and
hands it from rate to rate, the off-case one per run. Its floor counts the server start-ups and load windows only
(the warmup requests and the idle baseline are outside it), so only the ratio has a target there.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from llenergymeasure.host.docker_engine import docker_client  # noqa: E402
from llenergymeasure.images.build import build_image  # noqa: E402
from llenergymeasure.results.statistics import describe  # noqa: E402
from llenergymeasure.study import StudyConfig, StudyOptions, execute_study, expand_study  # noqa: E402

TARGET_RATIO = 0.35
TARGET_FLOOR = 1.25
METRICS = {"tokens_per_second": lambda r: r.output_tokens_per_second,
           "ttft_p50_ms": lambda r: r.ttft.p50_ms if r.ttft else None,
           "itl_p50_ms": lambda r: r.itl.p50_ms if r.itl else None}


def study_config(model: Path, image: str, reuse: bool, points: int, cycles: int) -> StudyConfig:
    lengths = [16, 24, 32, 40][:points]
    return StudyConfig.model_validate({
        "name": f"reuse-{'on' if reuse else 'off'}", "n_cycles": cycles, "order": "interleave",
        "engine_reuse": reuse,
        "base": {"model": str(model), "backend": "vllm", "device": "cpu", "runner": f"docker:{image}",
                 "n_prompts": 8, "force_output_length": True, "warmup": {"n_batches": 1},
                 "energy": {"baseline": {"mode": "off"}}, "vllm": {"max_model_len": 1024}},
        "sweep": {"max_output_tokens": lengths},
    })


def serving_study_config(model: Path, reuse: bool, points: int, cycles: int) -> StudyConfig:
    rates = [2, 4, 8, 16][:points]
    return StudyConfig.model_validate({
        "name": f"reuse-serving-{'on' if reuse else 'off'}", "n_cycles": cycles, "order": "interleave",
        "engine_reuse": reuse,
        "base": {"model": str(model), "backend": "pytorch", "scenario": "serving", "device": "cpu",
                 "dtype": "float32", "runner": "local", "max_output_tokens": 16, "force_output_length": True,
                 "energy": {"baseline": {"mode": "off"}},
                 "serving": {"arrival": "poisson", "n_requests": 16, "warmup_requests": 2,
                             "input_tokens": {"dist": "fixed", "value": 16}}},
        "sweep": {"serving.rate": rates},
    })


def run_side(study: StudyConfig, out: Path) -> dict:
    t0 = time.perf_counter()
    outcome = execute_study(study, expand_study(study), output=out, options=StudyOptions())
    wall = time.perf_counter() - t0
    assert outcome.status == "complete" and not outcome.failed, f"{study.name}: {outcome.manifest.stop_reason}"
    return collect(outcome.study_dir, wall)


def collect(study_dir: Path, wall: float | None = None) -> dict:
    """The figures of one side from its study folder. ``wall`` None: the manifest's; for a side stopped before it
    finished (``--collect`` of a cut-short run), the wall time of its finished runs, and that per run times the
    planned runs as ``wall_s_extrapolated``."""
    from llenergymeasure.results import FileResultsRepository
    from llenergymeasure.study.manifest import load_manifest

    manifest = load_manifest(study_dir)
    repo = FileResultsRepository(study_dir)
    done = [e for e in manifest.entries if e.status == "done"]
    complete = len(done) == len(manifest.entries)
    if wall is None:
        finished = [s for s in manifest.sessions if s.ended is not None]
        wall = sum(s.wall_s for s in finished) if complete and finished else sum(e.duration_s or 0 for e in done)
    runs = []
    for entry in done:
        r = repo.load_result(study_dir / entry.result_path)
        warm = sum(r.warmup.latencies_s) if r.warmup and r.warmup.latencies_s else 0.0
        runs.append({"point": entry.point, "cycle": entry.cycle, "fresh": r.engine.fresh,
                     "runs_served": r.engine.runs_served, "pid": r.engine.pid, "engine_load_s": r.engine.load_s,
                     "window_s": r.whole_run.duration_s, "warmup_s": warm, "runner_s": entry.runner_s,
                     "duration_s": entry.duration_s, **{k: f(r) for k, f in METRICS.items()}})
    loads = sum(r["engine_load_s"] for r in runs if r["fresh"])
    gaps = sum(s.gap_s for s in manifest.sessions)
    floor = loads + sum(r["window_s"] + r["warmup_s"] for r in runs) + gaps
    return {"wall_s": wall, "complete": complete, "runs_done": len(done), "runs_planned": len(manifest.entries),
            "wall_s_extrapolated": wall / len(done) * len(manifest.entries) if done else None,
            "engine_loads": sum(r["fresh"] for r in runs), "engine_load_s": loads,
            "floor_s": floor, "wall_over_floor": wall / floor if floor else None, "runs": runs}


def agreement(on: dict, off: dict) -> dict:
    """Per point and metric: reused runs (on-case, not fresh) vs cold runs (off-case): means, 95 % CIs, overlap."""
    out: dict = {}
    for point in sorted({r["point"] for r in on["runs"]}):
        reused = [r for r in on["runs"] if r["point"] == point and not r["fresh"]]
        cold = [r for r in off["runs"] if r["point"] == point]
        if not reused:
            continue
        out[str(point)] = {}
        for metric in METRICS:
            a = describe([r[metric] for r in reused if r[metric] is not None])
            b = describe([r[metric] for r in cold if r[metric] is not None])
            lo_a, hi_a = a.mean - (a.ci95 or 0), a.mean + (a.ci95 or 0)
            lo_b, hi_b = b.mean - (b.ci95 or 0), b.mean + (b.ci95 or 0)
            out[str(point)][metric] = {"reused_mean": a.mean, "reused_ci95": a.ci95, "cold_mean": b.mean,
                                       "cold_ci95": b.ci95, "agree": lo_a <= hi_b and lo_b <= hi_a}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=4, choices=range(1, 5))
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--reps", type=int, default=1, help="alternating on/off pairs")
    parser.add_argument("--start-with", choices=("on", "off"), default="on",
                        help="the side the first pair runs first (pairs then alternate)")
    parser.add_argument("--collect", nargs=2, metavar=("ON_DIR", "OFF_DIR"), type=Path,
                        help="report from two study folders already run (on, off) instead of running them; a side "
                        "cut short is reported as such, its wall time extrapolated from its finished runs")
    parser.add_argument("--scenario", choices=("offline", "serving"), default="offline",
                        help="offline: the vLLM CPU image study; serving: a rate sweep on lem's transformers server")
    parser.add_argument("--image-tag", help="build the vLLM CPU image under this tag instead of the standard one "
                        "(a branch's contract beside the shared image)")
    args = parser.parse_args()
    if args.image_tag:
        import llenergymeasure.images.build as build

        build.image_tag = lambda backend, cpu: args.image_tag

    from tiny_model import build_tiny_llama

    pairs = []
    if args.collect:
        on = collect(args.collect[0])
        off = collect(args.collect[1])
        pairs.append({"on": on, "off": off})
        args.points = len({r["point"] for r in on["runs"]})
        args.cycles = max(r["cycle"] for r in on["runs"])
        image = None
    elif args.scenario == "offline":
        image = build_image(docker_client(), "vllm", cpu=True)
    else:
        image = None
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_llama(Path(tmp) / "tiny")
        for i in range(0 if args.collect else args.reps):
            first = ("on", "off") if args.start_with == "on" else ("off", "on")
            sides = first if i % 2 == 0 else first[::-1]
            pair = {}
            for side in sides:
                study = (study_config(model, image.tag, side == "on", args.points, args.cycles) if image else
                         serving_study_config(model, side == "on", args.points, args.cycles))
                pair[side] = run_side(study, Path(tmp) / f"{side}-{i}")
                print(f"  rep {i + 1} {side}: wall {pair[side]['wall_s']:.1f} s, "
                      f"{pair[side]['engine_loads']} engine loads", flush=True)
            pairs.append(pair)

    def off_wall(side: dict) -> float:  # a cut-short side: its finished runs' wall, per run, times the planned runs
        return side["wall_s"] if side["complete"] else side["wall_s_extrapolated"]

    ratios = [p["on"]["wall_s"] / off_wall(p["off"]) for p in pairs]
    ratio = statistics.median(ratios)
    over_floor = statistics.median(p["on"]["wall_over_floor"] for p in pairs)
    agree = agreement(pairs[-1]["on"], pairs[-1]["off"])
    all_agree = all(m["agree"] for point in agree.values() for m in point.values())
    report = {
        "benchmark": "engine_reuse", "scenario": args.scenario,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "image": {"tag": image.tag if image else None},
        "complete": all(p["on"]["complete"] and p["off"]["complete"] for p in pairs),
        "points": args.points, "cycles": args.cycles, "reps": args.reps,
        "paired_ratios_on_to_off_wall": ratios,
        "ratio_on_to_off_wall": ratio,
        "target_ratio": f"<= {TARGET_RATIO}",
        "meets_ratio": ratio <= TARGET_RATIO if args.scenario == "offline" else None,
        "on_wall_over_floor": over_floor,
        "target_floor": f"<= {TARGET_FLOOR}",
        "meets_floor": over_floor <= TARGET_FLOOR if args.scenario == "offline" else None,
        "agreement": agree,
        "all_agree": all_agree,
        "pairs": pairs,
    }
    kind = "reuse" if args.scenario == "offline" else "reuse-serving"
    out = ROOT / "bench" / "results" / f"{kind}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    last = pairs[-1]
    what = "vLLM CPU image" if args.scenario == "offline" else "serving, lem's transformers server"
    print(f"engine reuse ({args.points} points x {args.cycles} cycles, {what}, {args.reps} pair(s)):")
    for side in ("on", "off"):
        s = last[side]
        cut = "" if s["complete"] else (f" [cut short: {s['runs_done']} of {s['runs_planned']} runs; "
                                        f"{s['wall_s_extrapolated']:.1f} s extrapolated]")
        print(f"  {side:3s} wall {s['wall_s']:.1f} s · {s['engine_loads']} engine loads ({s['engine_load_s']:.1f} s) "
              f"· floor {s['floor_s']:.1f} s · wall/floor {s['wall_over_floor']:.2f}{cut}")
    print(f"  on/off wall ratio {ratio:.3f} " + (f"({'meets' if ratio <= TARGET_RATIO else 'falls short of'} target "
          f"<= {TARGET_RATIO})" if args.scenario == "offline" else "(no target: the <= 0.35 is the offline study's)"))
    verdict = (f"({'meets' if over_floor <= TARGET_FLOOR else 'falls short of'} target <= {TARGET_FLOOR})"
               if args.scenario == "offline" else "(no target: warmups and baselines are outside this floor)")
    print(f"  on-case wall / (loads + windows + warmups + gaps) {over_floor:.2f} {verdict}")
    for point, metrics in agree.items():
        print(f"  point {point}: " + " · ".join(
            f"{k} reused {v['reused_mean']:.2f}±{v['reused_ci95'] or 0:.2f} vs cold {v['cold_mean']:.2f}"
            f"±{v['cold_ci95'] or 0:.2f} ({'agree' if v['agree'] else 'DIFFER'})" for k, v in metrics.items()))
    print(f"  written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
