"""`lem results best` and the energy–latency plot on a study of GPU operating points with known figures: the pick
is the lowest J/token whose latency meets the targets, computed here by hand."""

from __future__ import annotations

import pytest
from conftest import make_config, make_result
from dial_study import write_dial_study
from llenergymeasure.results.discover import find_experiments
from llenergymeasure.results.operating_points import NoneMeetsTargets, best, best_in, points
from llenergymeasure.results.plot import plot_results


@pytest.fixture
def study(tmp_path):
    return write_dial_study(tmp_path)


def test_lowest_energy_that_meets_the_targets(study):
    pts = points(find_experiments(study))
    assert best(pts, {"ttft_p50_ms": 200}).chosen.setting == "400 W, SM 1400 MHz"  # 0.30 J/token misses 260 ms
    assert best(pts, {"ttft_p50_ms": 300}).chosen.setting == "300 W, SM 1000 MHz"
    assert best(pts, {"ttft_p50_ms": 200, "itl_p50_ms": 25}).chosen.setting == "700 W"
    assert best(pts, {}).chosen.jpt.mean == pytest.approx(0.30)
    with pytest.raises(NoneMeetsTargets, match="TTFT p50 100.0 ms > 50"):
        best_in(study, {"ttft_p50_ms": 50})


def test_energy_latency_plot_across_operating_points(study, tmp_path):
    written = {p.path.name: p for p in plot_results(study, tmp_path / "plots")}
    dial = written["energy_latency.png"]
    assert dial.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and dial.path.stat().st_size > 10_000
    assert dial.xlabel == "TTFT p50 (ms)" and dial.ylabel == "energy per output token (J/token)"
    assert "across operating points" in dial.title


def _spec_study(tmp_path):
    """Two configurations: speculative decoding (3 tokens per 20 ms step: ITL 20 ms, TPOT 6.7 ms, 0.35 J/token) and
    plain decoding (1 token per 12 ms step: ITL = TPOT = 12 ms, 0.30 J/token)."""
    lat = lambda v: {"n": 4, "mean_ms": v, "p50_ms": v, "p90_ms": v, "p99_ms": v, "min_ms": v, "max_ms": v}  # noqa: E731
    root = tmp_path / "results"
    for name, watts, jpt, itl, tpot in (("spec", 700, 0.35, 20.0, 20.0 / 3), ("plain", 400, 0.30, 12.0, 12.0)):
        result = make_result(config=make_config(device="cuda", gpu={"power_limit_w": watts}), experiment_id=name,
                             energy_per_token_j=jpt, total_energy_j=jpt * 32,
                             energy={"source": "nvml_counter", "method": "NVML"},
                             ttft=lat(100.0), itl=lat(itl), tpot=lat(tpot))
        (root / name).mkdir(parents=True)
        (root / name / "result.json").write_text(result.model_dump_json())
    return root


def test_best_reads_time_per_token_as_tpot_not_the_gap_between_steps(tmp_path):
    # a 10 ms time-per-token target: only speculative decoding meets it (TPOT 6.7 ms), though its steps are 20 ms
    # apart; read as ITL (what "ITL (TPOT)" did) it would miss, and the plain configuration (12 ms) would miss too
    pts = points(find_experiments(_spec_study(tmp_path)))
    chosen = best(pts, {"tpot_p50_ms": 10.0}).chosen
    assert chosen.setting == "700 W" and chosen.latency["tpot_p50_ms"].mean == pytest.approx(20.0 / 3)
    assert best(pts, {"itl_p50_ms": 15.0}).chosen.setting == "400 W"  # ITL stays the gap between steps
    with pytest.raises(NoneMeetsTargets, match="TPOT p50 12.0 ms > 10"):
        best(pts, {"tpot_p50_ms": 10.0, "ttft_p50_ms": 50.0})
