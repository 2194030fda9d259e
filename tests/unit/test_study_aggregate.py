"""Per-point statistics over cycles, checked against hand-computed values."""

from __future__ import annotations

import csv
import io
import math

import pytest
from conftest import make_result
from llenergymeasure.results.metrics import STUDY_METRICS
from llenergymeasure.results.statistics import describe, t_critical
from llenergymeasure.study.aggregate import aggregate_point, csv_columns, cv_warnings, to_csv


def _lat(p50: float) -> dict:
    return {"n": 4, "mean_ms": p50, "p50_ms": p50, "p90_ms": p50, "p99_ms": p50, "min_ms": p50, "max_ms": p50}


def test_three_values_mean_std_ci_cv():
    s = describe([10.0, 12.0, 14.0])
    assert s.n == 3 and s.mean == 12.0 and s.std == pytest.approx(2.0)
    assert s.ci95 == pytest.approx(4.303 * 2 / math.sqrt(3), rel=1e-4)
    assert s.cv == pytest.approx(2 / 12)


def _t_coverage(q: float, df: int, steps: int = 20000) -> float:
    """P(|T| <= q) for Student's t with ``df`` degrees of freedom, by Simpson's rule over its density (independent of
    the code under test and of scipy)."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    pdf = lambda x: math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))  # noqa: E731
    h = q / steps
    s = pdf(0) + pdf(q) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, steps))
    return 2 * s * h / 3


def test_t_table_values_for_small_df():
    assert t_critical(1) == pytest.approx(12.706, abs=5e-4) and t_critical(2) == pytest.approx(4.303, abs=5e-4)
    assert t_critical(30) == pytest.approx(2.042, abs=5e-4)
    with pytest.raises(ValueError):
        t_critical(0)


@pytest.mark.parametrize("df, published", [(31, 2.0395), (60, 2.0003), (120, 1.9799), (999, 1.9623)])
def test_confidence_interval_beyond_30_df_uses_the_exact_t_quantile_not_1_96(df, published):
    t = t_critical(df)
    assert t == pytest.approx(published, abs=1e-4)  # printed tables (NIST/SEMATECH e-Handbook, 1.3.6.7.2)
    assert _t_coverage(t, df) == pytest.approx(0.95, abs=1e-6)


def test_ci95_of_40_cycles_uses_t_at_39_df():
    values = [float(v % 7) for v in range(40)]
    s = describe(values)
    assert s.ci95 == pytest.approx(2.0227 * s.std / math.sqrt(40), rel=1e-4)


def test_two_values_use_df_1():
    s = describe([1.0, 3.0])  # mean 2, std sqrt(2)
    assert s.std == pytest.approx(math.sqrt(2))
    assert s.ci95 == pytest.approx(12.706 * math.sqrt(2) / math.sqrt(2), rel=1e-4)


def test_one_value_has_no_spread_and_none_has_no_mean():
    one = describe([5.0])
    assert (one.n, one.mean, one.std, one.ci95, one.cv) == (1, 5.0, None, None, None)
    none = describe([])
    assert (none.n, none.mean, none.std, none.ci95, none.cv) == (0, None, None, None, None)


def test_aggregate_point_reads_every_metric_from_results():
    results = [
        make_result(output_tokens_per_second=tps, ttft=_lat(ttft), itl=_lat(itl), inference_time_s=t,
                    total_energy_j=e, energy_per_token_j=e / 32,
                    energy={"source": "nvml_counter", "method": "counter"})
        for tps, ttft, itl, t, e in [(10, 40, 5, 1.0, 32.0), (12, 50, 6, 2.0, 64.0), (14, 60, 7, 3.0, 96.0)]
    ]
    agg = aggregate_point("backend=vllm", "vllm", results, n_failed=1)
    assert (agg.n_ok, agg.n_failed) == (3, 1)
    m = agg.metrics
    assert set(m) == set(STUDY_METRICS)
    assert m["output_tokens_per_second"].mean == 12 and m["output_tokens_per_second"].std == pytest.approx(2)
    assert m["ttft_p50_ms"].mean == 50 and m["ttft_p50_ms"].std == pytest.approx(10)
    assert m["itl_p50_ms"].mean == 6 and m["itl_p50_ms"].ci95 == pytest.approx(4.303 / math.sqrt(3), rel=1e-4)
    assert m["inference_time_s"].mean == 2
    assert m["energy_j"].mean == 64 and m["energy_j"].std == pytest.approx(32)
    assert m["energy_per_token_j"].mean == 2 and m["energy_per_token_j"].std == pytest.approx(1)
    assert agg.energy_unavailable_reason is None
    d = agg.as_dict()
    assert d["output_tokens_per_second"] == {"mean": 12, "std": pytest.approx(2), "ci95": pytest.approx(4.303 * 2 / 3 ** 0.5, rel=1e-4),
                                      "cv": pytest.approx(2 / 12), "n": 3}


def test_energy_null_in_every_cycle_stays_null_with_its_reason():
    results = [make_result(output_tokens_per_second=v) for v in (16.0, 16.0)]  # energy null: CPU
    agg = aggregate_point("p", "pytorch", results)
    for name in ("energy_j", "energy_per_token_j"):
        s = agg.metrics[name]
        assert (s.n, s.mean, s.std, s.ci95, s.cv) == (0, None, None, None, None)
    assert agg.energy_unavailable_reason == "run is on CPU: NVML covers GPUs only"
    assert agg.metrics["output_tokens_per_second"].std == 0 and agg.metrics["output_tokens_per_second"].cv == 0


def test_a_metric_null_in_some_cycles_uses_the_others():
    results = [make_result(ttft=None), make_result(ttft=_lat(20.0)), make_result(ttft=_lat(30.0))]
    s = aggregate_point("p", "pytorch", results).metrics["ttft_p50_ms"]
    assert s.n == 2 and s.mean == 25.0


def test_no_successful_cycle_gives_null_metrics():
    agg = aggregate_point("p", "pytorch", [], n_failed=2)
    assert agg.n_ok == 0 and agg.n_failed == 2
    assert all(s.mean is None and s.n == 0 for s in agg.metrics.values())


def test_cv_warning_above_10_percent_only():
    noisy = aggregate_point("backend=vllm", "vllm", [make_result(output_tokens_per_second=v) for v in (10.0, 12.0, 14.0)])
    steady = aggregate_point("backend=pytorch", "pytorch",
                             [make_result(output_tokens_per_second=v) for v in (100.0, 101.0, 102.0)])
    assert cv_warnings([noisy, steady]) == [
        "output_tokens_per_second varies 17 % across cycles of backend=vllm: more cycles or longer windows"
    ]
    # exactly 10 % does not warn: 9, 10, 11 -> std 1, mean 10
    edge = aggregate_point("e", "pytorch", [make_result(output_tokens_per_second=v) for v in (9.0, 10.0, 11.0)])
    assert cv_warnings([edge]) == []


def test_csv_has_stable_columns_and_empty_cells_for_null():
    cols = csv_columns()
    assert cols[:4] == ["label", "backend", "n_ok", "n_failed"]
    for name in ("output_tokens_per_second", "ttft_p50_ms", "itl_p50_ms", "energy_j", "energy_per_token_j",
                 "energy_per_token_adjusted_j", "inference_time_s"):
        for stat in ("mean", "std", "ci95", "cv", "n"):
            assert f"{name}_{stat}" in cols
    assert cols[-1] == "energy_unavailable_reason"
    agg = aggregate_point("pytorch.batch_size=2", "pytorch",
                          [make_result(output_tokens_per_second=v) for v in (10.0, 12.0, 14.0)], n_failed=1)
    rows = list(csv.DictReader(io.StringIO(to_csv([agg]))))
    assert len(rows) == 1
    row = rows[0]
    assert list(row) == csv_columns(["sweep.pytorch.batch_size"])  # one column per swept parameter, beside label
    assert list(row)[:3] == ["label", "sweep.pytorch.batch_size", "backend"] and row["sweep.pytorch.batch_size"] == "2"
    assert row["label"] == "pytorch.batch_size=2" and row["n_ok"] == "3" and row["n_failed"] == "1"
    assert float(row["output_tokens_per_second_mean"]) == 12.0
    assert float(row["output_tokens_per_second_ci95"]) == pytest.approx(4.303 * 2 / math.sqrt(3), rel=1e-4)
    assert row["energy_per_token_j_mean"] == "" and row["energy_j_ci95"] == "" and row["energy_j_n"] == "0"
    assert row["energy_unavailable_reason"] == "run is on CPU: NVML covers GPUs only"
