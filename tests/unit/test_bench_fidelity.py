"""bench/fidelity.py's statistics: the ratio's CI against scipy's t interval computed here, and the rule that a target
is met only when the whole interval lies inside it."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fidelity():
    spec = importlib.util.spec_from_file_location("bench_fidelity", ROOT / "bench" / "fidelity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_fidelity"] = module
    spec.loader.exec_module(module)
    return module


def test_ratio_ci_is_the_t_interval_of_the_log_ratios_exponentiated(fidelity):
    ratios = [0.91, 1.02, 0.97, 1.05, 0.99, 0.95, 1.01]
    logs = [math.log(r) for r in ratios]
    lo, hi = stats.t.interval(0.95, len(logs) - 1, loc=sum(logs) / len(logs), scale=stats.sem(logs))
    got = fidelity.ratio_ci(ratios)
    assert got["n"] == 7
    assert got["ratio"] == pytest.approx(math.prod(ratios) ** (1 / 7))  # geometric mean
    assert got["ci95"] == pytest.approx([math.exp(lo), math.exp(hi)], rel=1e-9)


def test_a_single_pair_has_no_interval(fidelity):
    assert fidelity.ratio_ci([0.9])["ci95"] is None
    assert fidelity.verdict(None, (0.97, 1.03)) == "inconclusive"


@pytest.mark.parametrize(("ci", "target", "expected"), [
    ([0.975, 1.02], (0.97, 1.03), "meets"),
    ([0.96, 1.01], (0.97, 1.03), "inconclusive"),  # the point estimate is inside, the interval is not
    ([0.90, 0.96], (0.97, 1.03), "falls short"),
    ([1.031, 1.05], (0.97, 1.03), "falls short"),
    ([0.98, 1.5], (0.97, None), "meets"),
    ([0.95, 1.2], (0.97, None), "inconclusive"),
    ([1.01, 1.029], (None, 1.03), "meets"),
    ([1.04, 1.08], (None, 1.03), "falls short"),
])
def test_a_target_is_met_only_when_the_whole_interval_lies_inside_it(fidelity, ci, target, expected):
    assert fidelity.verdict(ci, target) == expected


def test_the_default_row_runs_with_the_runners_own_thread_setting_and_one_thread_is_the_second_row(fidelity):
    # lem's runner sets no thread count (torch's default: one per core); the bench's default row must not either
    import os
    import subprocess

    assert fidelity.build_parser().parse_args([]).threads == [None, 1]  # default threads first, then one thread
    assert fidelity.thread_settings("default,1") == [None, 1]
    child = [sys.executable, "-c", "import os; print(os.environ.get('OMP_NUM_THREADS', 'unset'))"]
    before = os.environ.get("OMP_NUM_THREADS")
    try:
        os.environ["OMP_NUM_THREADS"] = "3"  # whatever the caller's shell had
        fidelity.set_threads(None)
        assert subprocess.run(child, capture_output=True, text=True).stdout.strip() == "unset"
        fidelity.set_threads(1)
        assert subprocess.run(child, capture_output=True, text=True).stdout.strip() == "1"
    finally:
        fidelity.set_threads(None if before is None else int(before))
    with pytest.raises(Exception, match="neither 'default' nor a thread count"):
        fidelity.thread_settings("default,many")
