"""bench/report.py's serving rows: every bench/serving.py run is listed (not the newest five), each judged against
the pass rule as first written (the fit at the server's clock) with the revised verdict beside it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report():
    if str(ROOT / "bench") not in sys.path:  # report.py imports its sibling provenance.py, as when run from bench/
        sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_report"] = module
    spec.loader.exec_module(module)
    return module


def _run(ks_server: float, ks_client: float | None, lag_p99: float, rate: float = 1.0) -> dict:
    r = {"rate": 160.0, "n": 1000, "ks_pvalue": ks_server, "achieved_vs_scheduled": rate, "achieved_rate_rps": 153.7,
         "lag_p50_ms": 0.1, "lag_p99_ms": lag_p99, "machine_cpu_busy": 0.2, "loadavg_before": [0.5, 0.5, 0.5],
         "cpus": 2, "floor_lag_p99_ms": 0.6, "stub_sched_batch": True}
    if ks_client is not None:
        r["ks_pvalue_client"] = ks_client
    return r


def test_a_run_is_judged_against_the_rule_as_first_written_and_the_revised_one(report):
    # lag and rate met, the generator's fit met, the server's clock's fit not: the revised rule passes it, the rule as
    # first written does not, and says which target it missed
    v = report.serving_run_verdicts(_run(ks_server=1e-8, ks_client=0.12, lag_p99=0.8))
    assert (v["as_written"], v["revised"], v["missed"]) == (False, True, ["fit at the server's clock"])
    v = report.serving_run_verdicts(_run(ks_server=0.3, ks_client=None, lag_p99=1.2))  # an old run: no client fit
    assert (v["as_written"], v["revised"], v["missed"]) == (False, False, ["lag p99"])
    assert report.serving_run_verdicts(_run(0.3, 0.3, 0.9))["as_written"] is True


def test_every_serving_run_is_listed_with_a_summary_of_all(tmp_path, report):
    runs = [_run(1e-8, 0.12, 0.8)] * 4 + [_run(0.3, 0.001, 1.2)] * 3
    for i, r in enumerate(runs):
        (tmp_path / f"serving-2026120{i}-000000.json").write_text(json.dumps(r))
    rows = report._serving_rows(tmp_path)
    listed = [row for row in rows if row.startswith("| serving load generator, Poisson")]
    assert len(listed) == 7  # all seven, not the newest five
    assert all("falls short" in row for row in listed)
    assert sum("revised rule: meets" in row for row in listed) == 4
    (summary,) = [row for row in rows if "all runs" in row]
    assert "0 of 7 runs meet all three targets as first written; 4 of 7 under the revised rule" in summary
    assert "falls short: no run meets all three" in summary


def test_the_capacity_row_gives_the_worst_error_and_most_probes_against_the_fixed_target(report, tmp_path):
    case = {"slots": 4}
    runs = [{"case": case, "rel_error": e, "probes": p, "meets": e <= 0.05 and p <= 8} for e, p in ((0.01, 7), (0.06, 8))]
    data = {"target": {"rel_error_max": 0.05, "probes_max": 8}, "runs": runs, "worst_rel_error": 0.06,
            "most_probes": 8, "meets": False}
    (row,) = report.capacity_rows((tmp_path / "capacity-1.json", data))
    assert "worst 6.0% off, at most 8 probes" in row and "within 5% in ≤ 8 probes" in row and "falls short" in row
    assert "not run yet" in report.capacity_rows(None)[0]


def test_the_multi_turn_row_gives_the_worst_lag_and_the_history_checks(report, tmp_path):
    runs = [{"prompts_checked": 192, "history_wrong": [], "think_skipped": [], "lag_p99_ms": p} for p in (1.5, 6.2)]
    data = {"runs": runs, "worst_lag_p99_ms": 6.2, "meets": False}
    (row,) = report.conversation_rows((tmp_path / "conversations-1.json", data))
    assert "worst lag p99 6.20 ms over 2 cases" in row and "384 prompts checked, 0 with a wrong history" in row
    assert "lag p99 ≤ 5 ms" in row and "falls short" in row
    assert "not run yet" in report.conversation_rows(None)[0]
