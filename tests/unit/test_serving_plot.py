"""serving.png from results written through the contract models with known figures: J/token and J/good-token against
the offered rate are the hand-computed E/N and E/N_good (means over two cycles), the latency–energy front holds
exactly the non-dominated points by hand, and with energy null the figure says so and draws no energy at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_config, make_result
from llenergymeasure.results.discover import find_experiments
from llenergymeasure.results.plot import plot_results
from llenergymeasure.results.serving_plot import serving_figure, serving_points

# rate (req/s), energy J, output tokens, good output tokens, TPOT p50 ms: 6 req/s is dominated by 4 req/s (slower per
# user and dearer per token); the others trade speed per user for energy per token
POINTS = [(2, 50.0, 100, 100, 20.0), (4, 60.0, 200, 150, 25.0), (6, 84.0, 240, 120, 50.0), (8, 80.0, 400, 160, 40.0)]
JITTER = (0.9, 1.1)  # cycle 1 and 2 scale the energy; tokens stay


def _lat(v: float) -> dict:
    return {"n": 10, "mean_ms": v, "p50_ms": v, "p90_ms": v, "p99_ms": v, "min_ms": v, "max_ms": v}


def _result(name: str, rate: float, energy: float | None, tokens: int, good: int, tpot: float):
    cfg = make_config(scenario="serving", backend="vllm", device="cuda" if energy else "cpu",
                      serving={"arrival": "poisson", "rate": rate, "slo": {"tpot_ms": 45}})
    serving = {"arrival": "poisson", "offered_rate_rps": rate, "achieved_rate_rps": rate, "completed_rate_rps": rate,
               "n_requests": 20, "n_ok": 20, "n_errors": 0, "n_timeouts": 0, "duration_s": 10.0,
               "output_tokens_per_s": tokens / 10, "inflight_mean": 1.0, "inflight_median": 1.0, "inflight_max": 2,
               "tpot": _lat(tpot), "ttft": _lat(100.0), "idle_time_s": 0.0, "slo": {"tpot_ms": 45.0},
               "n_good": 10, "good_output_tokens": good, "goodput_rps": 1.0,
               "energy_per_good_token_j": energy / good if energy else None,
               "energy_unavailable_reason": None if energy else "run is on CPU: NVML covers GPUs only"}
    fields = {"config": cfg, "experiment_id": name, "output_tokens": tokens, "output_tokens_per_second": tokens / 10,
              "inference_time_s": 10.0, "serving": serving}
    if energy:
        fields |= {"total_energy_j": energy, "energy_per_token_j": energy / tokens,
                   "energy": {"source": "nvml_counter", "method": "NVML"}}
    return make_result(**fields)


def _study(tmp_path: Path, with_energy: bool = True) -> Path:
    root = tmp_path / "results" / "rates-20250101-120000"
    entries = []
    for i, (rate, energy, tokens, good, tpot) in enumerate(POINTS):
        for cycle, jitter in enumerate(JITTER, 1):
            name = f"rates-00{i + 1}-c{cycle}"
            (root / name).mkdir(parents=True)
            r = _result(name, rate, energy * jitter if with_energy else None, tokens, good, tpot * jitter)
            (root / name / "result.json").write_text(r.model_dump_json())
            entries.append({"label": f"serving.rate={rate}", "cycle": cycle, "result_path": name})
    (root / "manifest.json").write_text(json.dumps({"study": "rates", "entries": entries}))
    return root


def _series(ax) -> dict[str, tuple[list, list]]:
    return {c.get_label(): (list(c.lines[0].get_xdata()), list(c.lines[0].get_ydata())) for c in ax.containers}


def test_energy_per_token_and_per_good_token_against_the_offered_rate(tmp_path):
    fig, (left, right) = serving_figure(serving_points(find_experiments(_study(tmp_path))))
    by_label = _series(left)
    rates = [p[0] for p in POINTS]
    # means over the cycles, by hand: energy x 0.9 and x 1.1 average to the table's energy
    assert by_label["J/token (vllm)"][0] == rates
    assert by_label["J/token (vllm)"][1] == _approx([e / n for _, e, n, _, _ in POINTS])
    assert by_label["J/good-token (vllm)"][1] == _approx([e / g for _, e, _, g, _ in POINTS])
    assert left.get_xlabel() == "offered request rate (requests/s)"
    assert "J/token" in left.get_ylabel() and "J/token" in right.get_ylabel()


def test_the_latency_energy_front_holds_the_non_dominated_points(tmp_path):
    fig, (left, right) = serving_figure(serving_points(find_experiments(_study(tmp_path))))
    per_user = [(1000 / (t * 0.9) + 1000 / (t * 1.1)) / 2 for *_, t in POINTS]  # mean over cycles of 1000 / TPOT
    jpt = [e / n for _, e, n, _, _ in POINTS]
    xs, ys = _series(right)["vllm"]
    assert _flat(sorted(zip(xs, ys))) == _approx(_flat(sorted(zip(per_user, jpt))))
    (front,) = [line for line in right.get_lines() if line.get_label() == "Pareto front"]
    # by hand: 6 req/s (index 2) is slower per user and dearer per token than 4 req/s; the rest trade one for the other
    expected = sorted((per_user[i], jpt[i]) for i in (0, 1, 3))
    assert _flat(zip(front.get_xdata(), front.get_ydata())) == _approx(_flat(expected))
    assert right.get_xlabel() == "tok/s per user (1000 / TPOT p50 ms)"


def test_null_energy_is_stated_and_nothing_is_drawn_at_zero(tmp_path):
    root = _study(tmp_path, with_energy=False)
    written = {p.path.name: p for p in plot_results(root, tmp_path / "plots")}
    assert "serving.png" in written and (tmp_path / "plots" / "serving.png").stat().st_size > 10_000
    assert "Energy not measured" in written["serving.png"].title
    assert "run is on CPU: NVML covers GPUs only" in written["serving.png"].title
    fig, (left, right) = serving_figure(serving_points(find_experiments(root)))
    assert "J/token" not in left.get_ylabel() and "J/token" not in right.get_ylabel()
    assert not any("J/" in label for label in _series(left))
    tps = _series(left)["vllm"][1]
    assert tps == _approx([n / 10 for _, _, n, _, _ in POINTS]) and 0.0 not in tps


def _flat(pairs) -> list[float]:
    return [float(v) for pair in pairs for v in pair]


def _approx(values):
    import pytest

    return pytest.approx(values, rel=1e-9)


def _rates_study(tmp_path: Path, rates=(1, 4, 16)) -> Path:
    """Two cycles per rate whose energy differs 1:3, so the 95 % CI (t = 12.7 at n = 2) is far wider than the mean:
    a symmetric bar would reach below zero."""
    root = tmp_path / "results" / "sweep-20250101-120000"
    entries = []
    for i, rate in enumerate(rates):
        for cycle, energy in ((1, 20.0), (2, 60.0)):
            name = f"sweep-00{i + 1}-c{cycle}"
            (root / name).mkdir(parents=True)
            r = _result(name, rate, energy, 100, 80, 20.0 * cycle)
            (root / name / "result.json").write_text(r.model_dump_json())
            entries.append({"label": f"serving.rate={rate}", "cycle": cycle, "result_path": name})
    (root / "manifest.json").write_text(json.dumps({"study": "sweep", "entries": entries}))
    return root


def _bar_extent(ax) -> tuple[float, float]:
    """The lowest y and x any error bar reaches."""
    segs = [seg for c in ax.containers for coll in c.lines[2] for seg in coll.get_segments()]
    return min(y for seg in segs for _, y in seg), min(x for seg in segs for x, _ in seg)


def test_error_bars_stop_at_zero(tmp_path):
    fig, (left, right) = serving_figure(serving_points(find_experiments(_rates_study(tmp_path))))
    # by hand: mean 0.4 J/token, CI half-width 12.71 x std(0.2, 0.6)/sqrt(2) = 2.54: the lower bar would be -2.1
    low_left, _ = _bar_extent(left)
    low_y, low_x = _bar_extent(right)
    assert low_left == pytest.approx(0.0, abs=1e-12) and low_y >= 0 and low_x >= 0


def test_geometric_rates_are_on_a_log_axis_ticked_at_the_rates(tmp_path):
    fig, (left, _) = serving_figure(serving_points(find_experiments(_rates_study(tmp_path))))
    assert left.get_xscale() == "log"
    assert [t.get_text() for t in left.get_xticklabels()] == ["1", "4", "16"]


def test_a_single_run_sits_inside_its_axes_with_its_value_written(tmp_path):
    root = tmp_path / "one"
    (root / "r").mkdir(parents=True)
    (root / "r" / "result.json").write_text(_result("r", 4, 60.0, 200, 150, 25.0).model_dump_json())
    fig, (left, right) = serving_figure(serving_points(find_experiments(root)))
    lo, hi = left.get_xlim()
    assert lo < 4 < hi and hi / 4 == pytest.approx(4 / lo)  # centred on a log axis, not at an edge of 0..4
    assert left.get_ylim()[1] > 0.3 * 1.4  # 0.3 J/token well below the top
    texts = [t.get_text() for t in left.texts]
    assert "0.3 J/token" in texts and "0.4 J/good-token" in texts  # 60 J / 200 tokens, 60 J / 150 good tokens
    rlo, rhi = right.get_xlim()
    assert rlo == 0 and rhi == pytest.approx(2 * 1000 / 25.0)  # the per-user speed (40 tok/s) mid-axis
