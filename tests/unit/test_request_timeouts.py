"""Long answers and serving.request_timeout_s: a warning before the run when the longest answer needs more than
20 tokens/s per request to end in time, and the request_timeouts quality flag after a run whose requests timed out."""

from __future__ import annotations

from conftest import make_config
from lem_runner.contract.serving import SLOConfig
from lem_runner.serving.figures import serving_figures
from lem_runner.serving.records import RequestRecord
from lem_runner.serving.window import serving_flags
from llenergymeasure.config.host_checks import config_warnings


def _serving(**serving):
    return make_config(scenario="serving", max_output_tokens=64, serving={"arrival": "poisson", "rate": 1, **serving})


def test_a_longest_answer_a_slow_server_cannot_finish_in_time_is_warned_about():
    # 3,000 tokens in 120 s needs 25 tokens/s: warned; at 20 tokens/s it takes 150 s
    (w,) = [w for w in config_warnings(_serving(output_tokens={"dist": "lognormal", "mean": 500, "sigma": 1,
                                                               "max": 3000})) if "request_timeout_s" in w]
    assert "longest answer (3000 tokens)" in w and "25 tokens/s" in w and "150 s" in w and "raise" in w
    # 2,400 tokens in 120 s is exactly 20 tokens/s: no warning; nor 3,000 with a 150 s timeout
    assert not [w for w in config_warnings(_serving(output_tokens={"value": 2400})) if "request_timeout_s" in w]
    assert not [w for w in config_warnings(_serving(output_tokens={"value": 3000}, request_timeout_s=150))
                if "request_timeout_s" in w]
    # a conversation's answers count, max_output_tokens too
    assert [w for w in config_warnings(_serving(conversations={"answer_tokens": {"value": 5000}}))
            if "5000 tokens" in w]
    assert [w for w in config_warnings(make_config(scenario="serving", max_output_tokens=4000,
                                                   serving={"arrival": "poisson", "rate": 1}))
            if "4000 tokens" in w]


def test_timed_out_requests_raise_the_request_timeouts_flag():
    def rec(i, status):
        r = RequestRecord(i, None, 0.0 + i, first_token=0.1 + i, end=0.5 + i, chunk_times=[0.1 + i, 0.5 + i],
                          chunk_tokens=[1, 1], output_tokens=2, status=status)
        return r

    records = [rec(0, "ok"), rec(1, "timeout"), rec(2, "ok"), rec(3, "timeout")]
    f = serving_figures(records, arrival="poisson", offered_rate=1.0, clients=None, slo=SLOConfig(),
                        energy_between=None, energy_reason="none here", baseline_w=None)
    assert f.n_timeouts == 2
    (flag,) = [x for x in serving_flags(f, {}, [], 120.0) if x.code == "request_timeouts"]
    assert "2 of 4 request(s)" in flag.message and "120 s" in flag.message
    ok = serving_figures([rec(0, "ok")], arrival="poisson", offered_rate=1.0, clients=None, slo=SLOConfig(),
                         energy_between=None, energy_reason="none here", baseline_w=None)
    assert [x.code for x in serving_flags(ok, {}, [], 120.0)] == []
