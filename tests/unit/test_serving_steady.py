"""The serving steady state against loads whose shape is known: an overloaded server (queues grow), a load that
changes under the run, a light load with idle gaps, and a steady one (tests/serving_scenarios.py's slot server)."""

from __future__ import annotations

import pytest
from lem_runner.contract.serving import SLOConfig
from lem_runner.measurement.intervals import length, union
from lem_runner.serving.figures import serving_figures
from lem_runner.serving.window import serving_flags
from serving_scenarios import reading_of, slot_server


def _figures(records, reading=None):
    return serving_figures(records, arrival="constant", offered_rate=None, clients=None, slo=SLOConfig(),
                           energy_between=reading.energy_between if reading else None,
                           energy_reason=None if reading else "none", baseline_w=None)


def test_an_overloaded_load_is_flagged_and_its_queue_growth_recorded():
    # 11 req/s for 10 s into 6 slots of 1 s each (6 req/s): the queue grows by ~5 a second, TTFT with it
    records = slot_server([k / 11 for k in range(110)], slots=6, service_s=1.0)
    f = _figures(records)
    assert f.steady_state_quality == "overloaded"
    q = f.steady_state_inflight_by_quarter
    ttft = f.steady_state_ttft_p50_by_quarter_ms
    assert q[-1] > q[0] + 5 and ttft == sorted(ttft) and ttft[-1] > 1.5 * ttft[0]
    assert f.steady_state_completion_rate_rps == pytest.approx(6.0, rel=0.15)
    assert f.steady_state_arrival_rate_rps == pytest.approx(11.0, rel=0.1)


def test_a_load_that_changes_under_the_run_is_not_steady():
    # 2 req/s for 6 s, then 5 req/s for 4 s, into ample capacity (10 slots of 1 s): no queue, but the level moves
    arrivals = [0.5 * k for k in range(12)] + [6.0 + 0.2 * k for k in range(20)]
    f = _figures(slot_server(arrivals, slots=10, service_s=1.0))
    assert f.steady_state_quality == "not_steady"


def test_a_steady_load_is_steady():
    f = _figures(slot_server([0.25 * k for k in range(80)], slots=10, service_s=1.0))  # 4 req/s, 4 in flight
    assert f.steady_state_quality == "steady"
    assert f.steady_state_completion_rate_rps == pytest.approx(4.0, rel=0.1)


def test_the_steady_state_keeps_only_spans_at_the_level_and_no_idle_gap():
    # one request every 5 s, each 1 s long: the median in flight is 0, the level 1, and the steady state is the
    # four busy seconds before the last submission, not the 16 s from the first request's start
    records = slot_server([0.0, 5.0, 10.0, 15.0, 20.0], slots=1, service_s=1.0)
    truth = union((r.submit, min(r.end, 20.0)) for r in records)
    f = _figures(records, reading_of(lambda t: 50.0 * t + 5.0 * t * t, 22.0))  # power rising from 50 W
    assert f.steady_state_duration_s == pytest.approx(length(truth)) == 4.0
    assert [pytest.approx(list(span)) for span in truth] == [list(span) for span in f.steady_state_spans_s]
    assert f.steady_state_energy_j == pytest.approx(sum(50 * (b - a) + 5 * (b * b - a * a) for a, b in truth),
                                                    rel=1e-6)
    assert f.steady_state_output_tokens == sum(r.output_tokens for r in records[:4])


def test_an_unsteady_load_raises_its_quality_flag():
    overloaded = _figures(slot_server([k / 11 for k in range(110)], slots=6, service_s=1.0))
    changing = _figures(slot_server([0.5 * k for k in range(12)] + [6.0 + 0.2 * k for k in range(20)], slots=10,
                                    service_s=1.0))
    steady = _figures(slot_server([0.25 * k for k in range(80)], slots=10, service_s=1.0))
    assert [f.code for f in serving_flags(overloaded, {}, [])] == ["overloaded"]
    assert "TTFT median" in serving_flags(overloaded, {}, [])[0].message
    assert [f.code for f in serving_flags(changing, {}, [])] == ["not_steady"]
    assert serving_flags(steady, {}, []) == []
