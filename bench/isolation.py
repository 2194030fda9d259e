"""Isolation overhead: the same experiment run locally and in its container (image prebuilt), alternated, medians.

Reports the isolated/local wall-time ratio (target <= 1.10, DESIGN.md "Targets") and the time from launch to the
runner's first event ("ready": process or container start plus the runner's imports). Machines here are noisy, so
the two sides alternate and only medians and their ratio are reported.
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

from lem_runner.contract import ExperimentConfig  # noqa: E402
from llenergymeasure.experiment import execute_experiment  # noqa: E402
from llenergymeasure.host.docker_engine import docker_client  # noqa: E402
from llenergymeasure.images.build import build_image  # noqa: E402
from llenergymeasure.launchers.docker import DockerLauncher  # noqa: E402
from llenergymeasure.launchers.local import LocalLauncher  # noqa: E402

TARGET_RATIO = 1.10


def run_once(config: ExperimentConfig, launcher, out: Path) -> dict:
    t0 = time.perf_counter()
    ready: list[float] = []
    result, _ = execute_experiment(
        config, output=out, launcher=launcher,
        on_event=lambda e: ready.append(time.perf_counter() - t0) if e.event == "started" and not ready else None,
    )
    return {"wall_s": time.perf_counter() - t0, "ready_s": ready[0], "window_s": result.inference_time_s,
            "tokens_per_s": result.output_tokens_per_second, "output_tokens": result.output_tokens}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    from tiny_model import build_tiny_llama

    client = docker_client()
    image = build_image(client, "pytorch", cpu=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_llama(Path(tmp) / "tiny")
        config = ExperimentConfig(model=str(model), n_prompts=16, max_output_tokens=32, force_output_length=True,
                                  pytorch={"batch_size": 8})
        sides = {"local": LocalLauncher(), "isolated": DockerLauncher(image=image.tag)}
        runs: dict[str, list[dict]] = {k: [] for k in sides}
        run_once(config, sides["isolated"], Path(tmp) / "warm")  # first container start pays page-cache misses
        for i in range(args.reps):
            for name in (("local", "isolated") if i % 2 == 0 else ("isolated", "local")):
                runs[name].append(run_once(config, sides[name], Path(tmp) / name))

    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
    # median of per-pair ratios: adjacent runs share the machine's drift, which a ratio of medians does not cancel
    pairs = [i["wall_s"] / loc["wall_s"] for i, loc in zip(runs["isolated"], runs["local"])]
    ratio = statistics.median(pairs)
    report = {
        "benchmark": "isolation_overhead",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "image": {"tag": image.tag, "size_bytes": image.size_bytes},
        "reps": args.reps,
        "median": med,
        "paired_ratios_isolated_to_local_wall": pairs,
        "ratio_isolated_to_local_wall": ratio,
        "target": f"<= {TARGET_RATIO}",
        "meets_target": ratio <= TARGET_RATIO,
        "runs": runs,
    }
    out = ROOT / "bench" / "results" / f"isolation-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"isolation overhead ({args.reps} alternating pairs, medians):")
    for k, m in med.items():
        print(f"  {k:9s} wall {m['wall_s']:.2f} s · ready {m['ready_s']:.2f} s · window {m['window_s']:.2f} s · "
              f"{m['tokens_per_s']:.0f} tok/s")
    verdict = "meets" if ratio <= TARGET_RATIO else "falls short of"
    print(f"  isolated/local wall ratio {ratio:.3f}, median of pairs ({verdict} target <= {TARGET_RATIO})")
    print(f"  container start overhead (ready, isolated − local): {med['isolated']['ready_s'] - med['local']['ready_s']:.2f} s")
    print(f"  written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
