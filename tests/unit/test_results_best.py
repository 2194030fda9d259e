"""`lem results best` and the energy–latency plot on a study of GPU operating points with known figures: the pick
is the lowest J/token whose latency meets the targets, computed here by hand."""

from __future__ import annotations

import pytest
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
