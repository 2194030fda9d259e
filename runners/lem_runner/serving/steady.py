"""The steady state of a serving load and whether it was steady (docs/method.md, "Serving", steady state).

Steady spans: the pieces of the load phase (first submission to last submission: no arrival after it, so the rest
is drain) where the number of requests in flight is at or above its time-weighted median M over the load window (at
least 1). Idle gaps (nothing in flight) and dips below M are left out; the spans' envelope runs from the first to the
last of them.

Stationarity over the envelope, cut into four equal quarters of time: the in-flight mean, arrivals, completions and
the TTFT median of the requests submitted in each. A queue that keeps growing while completions fall behind arrivals
is ``overloaded`` (the offered rate exceeds what the server completes: its latencies grow with the run's length, so
no figure of it is a steady-state one); an in-flight level that drifts between the first and last quarter without
that is ``not_steady`` (the load changed under the run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lem_runner.measurement.intervals import Interval, union
from lem_runner.measurement.latency import percentile
from lem_runner.serving.records import RequestRecord

#: completions below this share of arrivals over the envelope, with the queue grown, is overload
COMPLETION_SHARE = 0.9
#: the queue counts as grown when the last quarter's in-flight mean exceeds the first's by this share (and >= 1)
GROWTH_SHARE = 0.25
#: the in-flight level counts as drifting when the first and last quarters differ by this share of its mean (and 1)
DRIFT_SHARE = 0.5
#: fewer arrivals than this in the envelope: too few to call a trend
MIN_ARRIVALS = 8

DEFINITION = ("the pieces of the load phase (first to last submission; the drain after it excluded) where the "
              "number of requests in flight is >= its time-weighted median M over the load window (at least 1): "
              "ramp-up, dips below M and idle gaps excluded; tokens counted by chunk timestamp, energy from the "
              "counter series over the pieces. Stationarity over the pieces' envelope in four quarters of time: "
              f"'overloaded' when completions < {COMPLETION_SHARE:.0%} of arrivals and the in-flight mean grew from "
              f"the first quarter to the last by > {GROWTH_SHARE:.0%} (and >= 1); 'not_steady' otherwise when the "
              f"in-flight means of the first and last quarters differ by > {DRIFT_SHARE:.0%} of its mean (and >= 1)")


@dataclass(frozen=True)
class Steadiness:
    spans: list[Interval]
    envelope: Interval
    quality: str  # steady | overloaded | not_steady
    arrival_rate_rps: float
    completion_rate_rps: float
    inflight_by_quarter: list[float]
    ttft_p50_by_quarter_ms: list[float | None]


def weighted_median(segments: Sequence[tuple[float, float, int]]) -> float:
    total = sum(b - a for a, b, _ in segments)
    acc = 0.0
    for dt, level in sorted(((b - a, lv) for a, b, lv in segments), key=lambda x: x[1]):
        acc += dt
        if acc >= total / 2:
            return float(level)
    return 0.0


def _mean_level(segments: Sequence[tuple[float, float, int]], a: float, b: float) -> float:
    if b <= a:
        return 0.0
    return sum((min(y, b) - max(x, a)) * lv for x, y, lv in segments if y > a and x < b) / (b - a)


def steady_state(records: Sequence[RequestRecord], segments: Sequence[tuple[float, float, int]]) -> Steadiness | None:
    """The steady spans and their stationarity, or None when no piece of the load phase reaches the level."""
    if not segments or not records:
        return None
    m = max(1.0, weighted_median(segments))
    last_submit = max(r.submit for r in records)
    spans = union((a, min(b, last_submit)) for a, b, lv in segments if lv >= m and a < last_submit)
    if not spans:
        return None
    e0, e1 = spans[0][0], spans[-1][1]
    arrivals = sum(1 for r in records if e0 <= r.submit < e1)
    completions = sum(1 for r in records if r.end is not None and e0 < r.end <= e1)
    quarter = (e1 - e0) / 4
    edges = [e0 + quarter * k for k in range(4)] + [e1]
    levels = [_mean_level(segments, a, b) for a, b in zip(edges, edges[1:])]
    ttfts: list[float | None] = []
    for a, b in zip(edges, edges[1:]):
        got = sorted((r.first_token - r.submit) * 1000 for r in records
                     if r.ok and r.first_token is not None and a <= r.submit < b)
        ttfts.append(percentile(got, 50) if got else None)
    grew = levels[-1] - levels[0] > max(1.0, GROWTH_SHARE * levels[0])
    mean = sum(levels) / 4
    quality = "steady"
    if arrivals >= MIN_ARRIVALS and completions < COMPLETION_SHARE * arrivals and grew:
        quality = "overloaded"
    elif arrivals >= MIN_ARRIVALS and abs(levels[-1] - levels[0]) > max(1.0, DRIFT_SHARE * mean):
        quality = "not_steady"
    span = e1 - e0
    return Steadiness(spans, (e0, e1), quality, arrivals / span if span > 0 else 0.0,
                      completions / span if span > 0 else 0.0, levels, ttfts)
