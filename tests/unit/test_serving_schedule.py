"""Arrival schedules and request lengths against their distributions (Kolmogorov-Smirnov / chi-square), seeded."""

from __future__ import annotations

import random
import statistics

import pytest
from lem_runner.contract import ExperimentConfig
from lem_runner.contract.serving import LengthDistribution
from lem_runner.serving.schedule import arrival_offsets, draw_length, plan_requests
from scipy import stats


def _gaps(arrival: str, rate: float, burstiness: float = 1.0, n: int = 2000, seed: int = 7) -> list[float]:
    t = arrival_offsets(arrival, rate, burstiness, n, random.Random(seed))
    return [b - a for a, b in zip(t, t[1:])]


@pytest.mark.parametrize("rate", [0.5, 4.0, 80.0])
def test_poisson_gaps_are_exponential_with_mean_one_over_rate(rate):
    gaps = _gaps("poisson", rate)
    assert stats.kstest(gaps, "expon", args=(0, 1 / rate)).pvalue > 0.01
    # and the test would notice a wrong rate
    assert stats.kstest(gaps, "expon", args=(0, 1.2 / rate)).pvalue < 0.01


@pytest.mark.parametrize("shape", [0.25, 1.0, 4.0])
def test_gamma_gaps_have_the_burstiness_as_shape_and_keep_the_rate(shape):
    gaps = _gaps("gamma", 3.0, shape)
    assert stats.kstest(gaps, "gamma", args=(shape, 0, 1 / (3.0 * shape))).pvalue > 0.01
    assert statistics.fmean(gaps) == pytest.approx(1 / 3.0, rel=0.1)


def test_constant_gaps_and_duration_bound():
    assert set(round(g, 12) for g in _gaps("constant", 5.0, n=50)) == {0.2}
    offsets = arrival_offsets("poisson", 10.0, 1.0, 0, random.Random(1), duration_s=3.0)
    assert offsets[0] == 0.0 and max(offsets) < 3.0 and 15 < len(offsets) < 50


def test_lengths_follow_their_distributions_within_bounds():
    rng = random.Random(3)
    uni = [draw_length(LengthDistribution(dist="uniform", min=4, max=9), rng) for _ in range(3000)]
    counts = [uni.count(v) for v in range(4, 10)]
    assert sum(counts) == 3000 and stats.chisquare(counts).pvalue > 0.01
    norm = [draw_length(LengthDistribution(dist="normal", mean=100, std=10, min=90, max=200), rng) for _ in range(3000)]
    assert min(norm) == 90 and max(norm) < 200 and statistics.median(norm) == pytest.approx(100, abs=2)
    logn = [draw_length(LengthDistribution(dist="lognormal", mean=50, sigma=0.5, max=400), rng) for _ in range(3000)]
    assert statistics.median(logn) == pytest.approx(50, rel=0.05) and max(logn) <= 400
    assert stats.kstest([x for x in logn if 5 < x < 400], "lognorm", args=(0.5, 0, 50)).pvalue > 0.001


def test_a_plan_is_reproducible_from_its_seed_and_exact_lengths_are_token_ids():
    cfg = ExperimentConfig(scenario="serving", serving={
        "rate": 2, "n_requests": 20, "input_tokens": {"dist": "uniform", "min": 3, "max": 12},
        "output_tokens": {"dist": "fixed", "value": 5}})
    a, b = plan_requests(cfg, ["p"], None, 512), plan_requests(cfg, ["p"], None, 512)
    assert a == b and len(a) == 20
    assert all(isinstance(r.prompt, list) and 3 <= len(r.prompt) <= 12 and r.max_tokens == 5 for r in a)
    assert all(10 <= t < 502 for r in a for t in r.prompt)
    other = plan_requests(cfg.model_copy(update={"seed": 1}), ["p"], None, 512)
    assert [r.arrival_s for r in other] != [r.arrival_s for r in a]
