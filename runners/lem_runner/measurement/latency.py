"""TTFT and inter-token latency from per-request token timestamps taken in the measured run itself."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lem_runner.contract.result import LatencyStats


@dataclass(frozen=True)
class RequestTiming:
    """One request: when its generation began and when each of its output tokens arrived (perf_counter seconds)."""

    start: float
    token_times: Sequence[float]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), ``q`` in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_stats(values_s: Sequence[float]) -> LatencyStats | None:
    """Statistics in milliseconds, or None when there are no samples."""
    if not values_s:
        return None
    ms = sorted(v * 1000.0 for v in values_s)
    return LatencyStats(
        n=len(ms),
        mean_ms=sum(ms) / len(ms),
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        min_ms=ms[0],
        max_ms=ms[-1],
    )


def ttft_and_itl(requests: Sequence[RequestTiming]) -> tuple[LatencyStats | None, LatencyStats | None]:
    """TTFT per request (first token − start) and ITL per gap between consecutive tokens of a request."""
    ttfts = [r.token_times[0] - r.start for r in requests if r.token_times]
    gaps = [b - a for r in requests for a, b in zip(r.token_times, r.token_times[1:])]
    return latency_stats(ttfts), latency_stats(gaps)
