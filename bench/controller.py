"""Controller overhead: a study of 10 trivial experiments on the tiny model, run through ``run_study``; the study's
wall time minus the runners' own time (and minus gaps, which are off), per experiment (target <= 0.5 s, DESIGN.md
"Targets"). The runners' time includes their process start and model load: the overhead is what the controller adds
around them (config expansion, manifest writes, folder creation, reading results back, aggregation)."""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import llenergymeasure  # noqa: E402

TARGET_S = 0.5


def main() -> int:
    from tiny_model import build_tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_llama(Path(tmp) / "tiny")
        study = {
            "name": "overhead",
            "base": {"model": str(model), "n_prompts": 1, "max_output_tokens": 2, "warmup": {"n_batches": 0},
                     "runner": "local"},
            "sweep": {"seed": list(range(10))},
            "n_cycles": 1,
        }
        t0 = time.perf_counter()
        result = llenergymeasure.run_study(study, output=Path(tmp) / "results", no_gaps=True)
        wall = time.perf_counter() - t0
    overhead = result.controller_overhead_s_per_experiment
    record = {
        "benchmark": "controller_overhead", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "experiments": len(result.entries), "failed": result.failed, "study_wall_s": wall,
        "controller_overhead_s_per_experiment": overhead, "target_s": TARGET_S,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    out = ROOT / "bench" / "results" / f"controller-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2), encoding="utf-8")
    verdict = "meets" if overhead is not None and overhead <= TARGET_S else "falls short"
    print(f"controller overhead {overhead:.3f} s per experiment over {len(result.entries)} experiments "
          f"(target <= {TARGET_S} s): {verdict}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
