"""A study of three GPU operating points with known figures (two cycles each, means exactly the table's), for the
`lem results best` and energy-latency plot tests."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import make_config, make_result

# (power limit W, SM lock MHz, J/token, TTFT p50 ms, ITL p50 ms): lower clocks cost latency and save energy
POINTS = [(700, None, 0.50, 100.0, 20.0), (400, 1400, 0.40, 150.0, 26.0), (300, 1000, 0.30, 260.0, 35.0)]


def _result(name, watts, sm, jpt, ttft, itl, jitter):
    gpu = {"power_limit_w": watts} | ({"locked_sm_clock_mhz": sm} if sm else {})
    lat = lambda v: {"n": 4, "mean_ms": v, "p50_ms": v, "p90_ms": v, "p99_ms": v * 1.5, "min_ms": v, "max_ms": v}  # noqa: E731
    return make_result(config=make_config(device="cuda", gpu=gpu), experiment_id=name,
                       energy_per_token_j=jpt * jitter, total_energy_j=jpt * jitter * 32,
                       energy={"source": "nvml_counter", "method": "NVML"},
                       ttft=lat(ttft * jitter), itl=lat(itl * jitter), tpot=lat(itl * jitter),  # 1 token a step
                       quality_flags=["clock_drift"] if sm == 1000 else [])


def write_dial_study(tmp_path: Path) -> Path:
    root = tmp_path / "results" / "dial-20250101-120000"
    entries = []
    for i, (w, sm, jpt, ttft, itl) in enumerate(POINTS):
        label = f"gpu.power_limit_w={w}" + (f", gpu.locked_sm_clock_mhz={sm}" if sm else "")
        for cycle, jitter in ((1, 0.95), (2, 1.05)):  # means over the two cycles are exactly the table's values
            name = f"dial-00{i + 1}-c{cycle}"
            (root / name).mkdir(parents=True)
            (root / name / "result.json").write_text(_result(name, w, sm, jpt, ttft, itl, jitter).model_dump_json())
            entries.append({"label": label, "cycle": cycle, "result_path": name})
    (root / "manifest.json").write_text(json.dumps({"study": "dial", "entries": entries}))
    return root
