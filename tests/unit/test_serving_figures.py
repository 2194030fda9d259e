"""Serving figures against scenarios whose truth is computed by hand: energy per request (attribution), idle
energy, steady state, latencies and SLO goodput. Energy comes from a real CounterTrack fed by FakeCounterDevice."""

from __future__ import annotations

import pytest
from fakes import FakeClock, FakeCounterDevice
from lem_runner.contract.serving import SLOConfig
from lem_runner.energy.base import EnergyReading
from lem_runner.energy.counter import CounterTrack
from lem_runner.serving.figures import attribute_energy, serving_figures
from lem_runner.serving.records import RequestRecord


def _reading(power_w: float, t_end: float, period: float = 0.0) -> EnergyReading:
    """A counter read every 10 ms from a device drawing ``power_w`` (its update period ``period``)."""
    clock = FakeClock()
    dev = FakeCounterDevice(clock, lambda t: power_w * t, update_period_s=period)
    track = CounterTrack(update_period_s=period or None)
    for _ in range(int(t_end / 0.01) + 1):
        track.feed(clock.now, dev.energy_mj())
        clock.advance(0.01)
    return EnergyReading("fake", "fake counter", t_end, total_j=track.total_j, tracks={"0": track})


def _req(i: int, submit: float, end: float, token_times: list[float], tokens_each: int = 1) -> RequestRecord:
    return RequestRecord(i, None, submit, first_token=token_times[0], end=end, chunk_times=token_times,
                         chunk_tokens=[tokens_each] * len(token_times), output_tokens=tokens_each * len(token_times),
                         status="ok")


def _ticks(a: float, b: float) -> list[float]:
    """A token at the end of every 0.1 s from ``a`` (an engine step's end): each chunk's work lies in the 0.1 s
    before it, as the attribution spreads it."""
    return [round(a + 0.1 * (k + 1), 6) for k in range(round((b - a) / 0.1))]


# A in flight 1-3 s, one token per 0.1 s (each at the end of its 0.1 s); B in flight 2-3 s, three tokens per 0.1 s; nothing 3-4 s; C alone 4-5 s.
# At a constant 100 W: 1-2 s is A's (100 J); 2-3 s splits 1:3 by tokens (A 25 J, B 75 J); 3-4 s is idle (100 J);
# 4-5 s is C's (100 J). Total 400 J.
def _scenario() -> list[RequestRecord]:
    return [_req(0, 1.0, 3.0, _ticks(1.0, 3.0)), _req(1, 2.0, 3.0, _ticks(2.0, 3.0), tokens_each=3),
            _req(2, 4.0, 5.0, _ticks(4.0, 5.0))]


def test_energy_is_attributed_by_work_and_idle_energy_is_apart():
    reading = _reading(100.0, 6.0)
    shares = attribute_energy(_scenario(), reading.energy_between, 1.0, 5.0)
    per, idle = shares.raw, shares.idle
    assert per == pytest.approx([125.0, 75.0, 100.0], rel=1e-6)
    assert idle == pytest.approx(100.0, rel=1e-6)
    assert sum(per) + idle == pytest.approx(reading.energy_between(1.0, 5.0), rel=1e-9)


def test_requests_that_only_wait_share_by_time_in_flight():
    queued = [RequestRecord(0, None, 0.0, first_token=None, end=1.0, status="timeout"),
              RequestRecord(1, None, 0.5, first_token=None, end=1.0, status="timeout")]
    shares = attribute_energy(queued, _reading(40.0, 2.0).energy_between, 0.0, 1.0)
    per, idle = shares.raw, shares.idle
    assert per == pytest.approx([30.0, 10.0], rel=1e-6) and idle == pytest.approx(0.0, abs=1e-9)


def test_serving_figures_latencies_goodput_and_energy_per_good_token():
    records = _scenario()
    reading = _reading(100.0, 6.0)
    slo = SLOConfig(e2e_ms=1500)  # A (2 s) misses, B and C (1 s) meet it
    f = serving_figures(records, arrival="poisson", offered_rate=1.0, clients=None, slo=slo,
                        energy_between=reading.energy_between, energy_reason=None, baseline_w=20.0)
    assert (f.n_requests, f.n_ok, f.n_good) == (3, 3, 2)
    assert f.duration_s == pytest.approx(4.0) and f.idle_time_s == pytest.approx(1.0)
    assert f.idle_energy_j == pytest.approx(100.0, rel=1e-6)
    assert f.ttft.p50_ms == pytest.approx(100.0) and f.e2e.max_ms == pytest.approx(2000.0)
    assert f.tpot.mean_ms == pytest.approx((1900 / 19 + 900 / 29 + 900 / 9) / 3)  # (last - first) / (tokens - 1)
    assert f.itl.p50_ms == pytest.approx(100.0)
    assert f.inflight_max == 2 and f.inflight_mean == pytest.approx((1 + 2 + 0 + 1) / 4)
    assert f.achieved_rate_rps == pytest.approx(2 / 3.0)
    good_tokens = 30 + 10
    assert f.good_output_tokens == good_tokens
    assert f.energy_per_good_token_j == pytest.approx(400.0 / good_tokens, rel=1e-6)
    assert f.energy_per_good_token_adjusted_j == pytest.approx((400.0 - 20.0 * 4) / good_tokens, rel=1e-6)
    assert f.good_requests_energy_per_token_j == pytest.approx((75.0 + 100.0) / good_tokens, rel=1e-6)
    assert f.energy_per_request.mean_j == pytest.approx(100.0, rel=1e-6)
    assert f.energy_per_request.mean_adjusted_j == pytest.approx((400 - 100 - 20 * 3) / 3, rel=1e-6)
    assert [r.energy_j for r in records] == pytest.approx([125.0, 75.0, 100.0], rel=1e-6)
    # in flight 1, 2, 0, 1 over the four seconds: median 1; the load phase ends at the last submission (4 s)
    assert f.steady_state_start_s == pytest.approx(0.0) and f.steady_state_duration_s == pytest.approx(2.0)


def test_without_energy_every_energy_figure_is_null_with_the_reason():
    f = serving_figures(_scenario(), arrival="poisson", offered_rate=1.0, clients=None, slo=SLOConfig(ttft_ms=10),
                        energy_between=None, energy_reason="no NVML here", baseline_w=None)
    assert f.n_good == 0 and f.energy_per_good_token_j is None and f.idle_energy_j is None
    assert f.energy_per_request is None and f.energy_unavailable_reason == "no NVML here"


def test_errors_are_counted_and_kept_out_of_latencies():
    records = [*_scenario(), RequestRecord(3, None, 1.5, end=1.6, status="error", error="ConnectionResetError")]
    f = serving_figures(records, arrival="poisson", offered_rate=1.0, clients=None, slo=SLOConfig(),
                        energy_between=None, energy_reason="x", baseline_w=None)
    assert (f.n_requests, f.n_ok, f.n_errors) == (4, 3, 1) and f.e2e.n == 3
    assert f.error_examples == ["ConnectionResetError"] and f.n_good is None
