"""`lem results best` and the energy–latency plot on a study of GPU operating points with known figures: the pick
is the lowest J/token whose latency meets the targets, computed here by hand."""

from __future__ import annotations

import json

import pytest
from conftest import make_config, make_result, run_lem
from llenergymeasure.results.discover import find_experiments
from llenergymeasure.results.operating_points import NoneMeetsTargets, best, best_in, points
from llenergymeasure.results.plot import plot_results

# (power limit W, SM lock MHz, J/token, TTFT p50 ms, ITL p50 ms): lower clocks cost latency and save energy
POINTS = [(700, None, 0.50, 100.0, 20.0), (400, 1400, 0.40, 150.0, 26.0), (300, 1000, 0.30, 260.0, 35.0)]


def _result(name, watts, sm, jpt, ttft, itl, jitter):
    gpu = {"power_limit_w": watts} | ({"locked_sm_clock_mhz": sm} if sm else {})
    lat = lambda v: {"n": 4, "mean_ms": v, "p50_ms": v, "p90_ms": v, "p99_ms": v * 1.5, "min_ms": v, "max_ms": v}  # noqa: E731
    return make_result(config=make_config(device="cuda", gpu=gpu), experiment_id=name,
                       avg_energy_per_token_j=jpt * jitter, total_energy_j=jpt * jitter * 32,
                       energy={"sampler": "nvml_counter", "method": "NVML", "total_energy_j": jpt * jitter * 32},
                       ttft=lat(ttft * jitter), itl=lat(itl * jitter),
                       quality_flags=["clock_drift"] if sm == 1000 else [])


@pytest.fixture
def study(tmp_path):
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


def test_lowest_energy_that_meets_the_targets(study):
    pts = points(find_experiments(study))
    assert best(pts, {"ttft_p50_ms": 200}).chosen.setting == "400 W, SM 1400 MHz"  # 0.30 J/token misses 260 ms
    assert best(pts, {"ttft_p50_ms": 300}).chosen.setting == "300 W, SM 1000 MHz"
    assert best(pts, {"ttft_p50_ms": 200, "itl_p50_ms": 25}).chosen.setting == "700 W"
    assert best(pts, {}).chosen.jpt.mean == pytest.approx(0.30)
    with pytest.raises(NoneMeetsTargets, match="TTFT p50 100.0 ms > 50"):
        best_in(study, {"ttft_p50_ms": 50})


def test_cli_prints_the_pick_and_every_candidate(study):
    out = run_lem("results", "best", str(study), "--ttft-p50-ms", "200", timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("best for TTFT p50 <= 200 ms: dial: gpu.power_limit_w=400, gpu.locked_sm_clock_mhz=1400 "
                               "(pytorch; 400 W, SM 1400 MHz): 0.4 ± ")
    assert "2 of 3 configuration(s) meet the targets" in lines[1]
    assert any("missed:" in ln and "TTFT p50 260.0 ms > 200" in ln for ln in lines)
    none = run_lem("results", "best", str(study), "--ttft-p50-ms", "10", timeout=120)
    assert none.returncode == 1 and none.stderr.startswith("error: no configuration meets the targets")


def test_energy_latency_plot_across_operating_points(study, tmp_path):
    written = {p.path.name: p for p in plot_results(study, tmp_path / "plots")}
    dial = written["energy_latency.png"]
    assert dial.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and dial.path.stat().st_size > 10_000
    assert dial.xlabel == "TTFT p50 (ms)" and dial.ylabel == "energy per output token (J/token)"
    assert "across operating points" in dial.title
