"""The capacity search's logic (lem_runner.serving.capacity) against servers whose verdict at every load is known in
closed form, and the ``serving.capacity`` section's checks. The search against a real server over sockets is
tests/integration/test_capacity_stub.py (the stub) and test_capacity_pytorch.py (the transformers server)."""

from __future__ import annotations

import math

import pytest
from lem_runner.contract import ExperimentConfig
from lem_runner.contract.capacity import CapacityConfig, bisections
from lem_runner.contract.result import ServingFigures
from lem_runner.serving.capacity import ProbeRun, search, verdict
from pydantic import ValidationError


def _figures(good_share: float, quality: str | None = "steady", n: int = 40) -> ServingFigures:
    return ServingFigures(arrival="constant", completed_rate_rps=1.0, n_requests=n, n_ok=n, n_errors=0, n_timeouts=0,
                          duration_s=1.0, output_tokens_per_s=1.0, inflight_mean=1.0, inflight_median=1.0,
                          inflight_max=1, idle_time_s=0.0, steady_state_quality=quality, good_share=good_share,
                          goodput_rps=good_share * n, slo={"ttft_ms": 100.0})


def _server(true: float, integer: bool = False):
    """A server whose requests all meet the SLO up to ``true`` and none above it."""
    loads: list[float] = []

    def probe(index: int, load: float) -> ProbeRun:
        assert index == len(loads)
        loads.append(load)
        return ProbeRun(_figures(1.0 if load <= true else 0.0))
    return probe, loads


@pytest.mark.parametrize("true", [10.4, 13.0, 25.0, 61.7, 99.0, 119.0])
def test_the_capacity_found_is_within_tolerance_below_the_true_one_in_at_most_8_probes(true):
    cap = CapacityConfig(rate_min=10, rate_max=120, tolerance=0.05)
    probe, loads = _server(true)
    found, runs = search(cap, probe)
    assert found.found == "bracketed" and len(loads) <= 8 and len(runs) == len(loads) == len(found.probes)
    assert found.capacity <= true < found.first_failing  # the bracket holds the truth
    assert (true - found.capacity) / true <= 0.05
    assert found.probes[found.headline_probe].load == found.capacity and found.capacity_rps == found.capacity
    assert loads[:2] == [10, 120] and "tolerance" in found.stop_reason


def test_clients_are_bisected_by_integers_until_adjacent():
    cap = CapacityConfig(concurrency_min=1, concurrency_max=64, tolerance=0.01, max_probes=10)
    probe, loads = _server(23, integer=True)
    found, _ = search(cap, probe)
    assert found.capacity == 23 and found.first_failing == 24 and all(x == int(x) for x in loads)
    assert "adjacent" in found.stop_reason and len(loads) <= 2 + math.ceil(math.log2(63))


def test_the_bracket_ends_decide_alone_when_the_capacity_is_outside_it():
    above, _ = search(CapacityConfig(rate_min=1, rate_max=4), _server(10.0)[0])
    assert (above.found, above.capacity, above.first_failing, len(above.probes)) == ("at_least_max", 4, None, 2)
    below, _ = search(CapacityConfig(rate_min=1, rate_max=4), _server(0.5)[0])
    assert (below.found, below.capacity, len(below.probes)) == ("below_min", None, 1)
    assert below.energy_per_good_token_j is None and "no probe passed" in below.energy_unavailable_reason


def test_a_probe_the_steady_state_test_refuses_fails_whatever_its_good_share():
    assert verdict(_figures(1.0, "overloaded"), 0.9) == "overloaded"
    assert verdict(_figures(1.0, "not_steady"), 0.9) == "not_steady"
    assert verdict(_figures(1.0, None), 0.9) == "no_steady_state"
    assert verdict(_figures(0.85), 0.9) == "below_good_share"
    assert verdict(_figures(0.9), 0.9) == "pass"
    # a server that meets the SLO everywhere but overloads above 30 req/s: the capacity is 30, not the bracket's top
    found, _ = search(CapacityConfig(rate_min=10, rate_max=120),
                      lambda i, load: ProbeRun(_figures(1.0, "steady" if load <= 30 else "overloaded")))
    assert found.capacity <= 30 < found.first_failing and (30 - found.capacity) / 30 <= 0.05
    assert {p.verdict for p in found.probes if not p.passed} == {"overloaded"}


def test_the_probe_budget_a_bracket_needs_is_checked_against_max_probes():
    assert 2 + bisections(10, 120, 0.05, False) == 8  # ln(12) / 2^6 <= ln(1.05)
    with pytest.raises(ValidationError, match="needs up to 10 probes"):
        CapacityConfig(rate_min=1, rate_max=1000, tolerance=0.05)


def _serving(**kw):
    return ExperimentConfig(model="m", scenario="serving", serving=kw)


@pytest.mark.parametrize("serving,message", [
    ({"capacity": {"rate_min": 4, "rate_max": 4}, "slo": {"ttft_ms": 100}}, "rate_min 4 must be below rate_max 4"),
    ({"capacity": {"rate_min": 1, "rate_max": 4}}, "needs serving.slo with at least one bound"),
    ({"arrival": "trace", "trace": "t.jsonl", "capacity": {"rate_min": 1, "rate_max": 4}, "slo": {"ttft_ms": 9}},
     "arrival 'trace' has no rate or clients to vary"),
    ({"capacity": {"rate_min": 1, "rate_max": 4, "good_share": 0}, "slo": {"ttft_ms": 9}}, "greater than 0"),
    ({"capacity": {"rate_min": 1, "rate_max": 4, "good_share": 1.5}, "slo": {"ttft_ms": 9}}, "less than or equal"),
    ({"capacity": {"rate_min": 1, "rate_max": 4}, "rate": 2, "slo": {"ttft_ms": 9}}, "leave serving.rate"),
    ({"arrival": "concurrency", "capacity": {"rate_min": 1, "rate_max": 4}, "slo": {"ttft_ms": 9}},
     "give concurrency_min and concurrency_max"),
    ({"capacity": {"rate_min": 1}, "slo": {"ttft_ms": 9}}, "give both rate_min and rate_max"),
    ({"capacity": {"rate_min": 1, "rate_max": 4}, "slo": {"ttft_ms": 9}, "conversations": {"turns": 2}},
     "capacity searches single-turn load only"),
])
def test_bad_capacity_sections_are_refused_naming_the_problem(serving, message):
    with pytest.raises(ValidationError, match=message):
        _serving(**serving)


def test_a_capacity_section_needs_no_rate_or_clients_of_its_own():
    assert _serving(capacity={"rate_min": 1, "rate_max": 4}, slo={"ttft_ms": 9}).serving.rate is None
    c = _serving(arrival="concurrency", capacity={"concurrency_min": 1, "concurrency_max": 8}, slo={"e2e_ms": 9})
    assert c.serving.capacity.knob == "concurrency" and c.serving.capacity.bracket == (1.0, 8.0)
    g = _serving(arrival="gamma", burstiness=0.5, capacity={"rate_min": 1, "rate_max": 4}, slo={"ttft_ms": 9})
    assert g.serving.capacity.good_share == 0.9
