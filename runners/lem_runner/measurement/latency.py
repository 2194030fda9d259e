"""TTFT, queue time and inter-token latency from per-request token timestamps taken in the measured run itself.

One TTFT for every backend: from the request's submission to its first token, queueing included, as ``vllm bench
serve`` measures it (and MLPerf's Offline scenario submits every query at once). In lem's offline scenario the whole
prompt set is submitted when the measured pass over it starts, so a request the engine could not start at once (a
later PyTorch batch, a request waiting for a free vLLM slot) carries its wait in its TTFT. The queue time, submission
to the start of its prefill, is reported beside it; ``batch_ttft`` keeps the time from the start of the ``generate``
call that carried the request (PyTorch: its own batch's start), which is the per-batch prefill latency.

ITL and TPOT have one definition offline and in serving, ``vllm bench serve``'s: ITL is the gap between consecutive
distinct token timestamps of a request (an engine step offline, a streamed chunk in serving), so a step that emits
several tokens at once (speculative decoding) is one gap, not one real gap and several of 0 ms; TPOT is per request,
(last token - first token) / (output tokens - 1), the time per output token after the first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lem_runner.contract.result import LatencyStats


@dataclass(frozen=True)
class RequestTiming:
    """One request: when its generate call began, when each output token arrived (perf_counter seconds), when it was
    submitted (None: at ``start``) and when its prefill began (None: unknown)."""

    start: float
    token_times: Sequence[float]
    submitted: float | None = None
    prefill_start: float | None = None

    @property
    def submitted_at(self) -> float:
        return self.start if self.submitted is None else self.submitted


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


ITL_DEFINITION = ("gap between consecutive distinct token timestamps of a request (one engine step or streamed "
                  "chunk: tokens a step emits together count once), per gap")
TPOT_DEFINITION = "per request: (last token - first token) / (output tokens - 1), requests with two or more tokens"


def itl_gaps(token_times: Sequence[float]) -> list[float]:
    """Gaps between a request's consecutive distinct token timestamps (its steps or chunks)."""
    steps = [t for i, t in enumerate(token_times) if i == 0 or t != token_times[i - 1]]
    return [b - a for a, b in zip(steps, steps[1:])]


def ttft_and_itl(requests: Sequence[RequestTiming]) -> tuple[LatencyStats | None, LatencyStats | None]:
    """TTFT per request (first token − submission) and ITL per gap between a request's steps (``itl_gaps``)."""
    ttfts = [r.token_times[0] - r.submitted_at for r in requests if r.token_times]
    gaps = [g for r in requests for g in itl_gaps(r.token_times)]
    return latency_stats(ttfts), latency_stats(gaps)


def tpot(requests: Sequence[RequestTiming]) -> LatencyStats | None:
    """Time per output token after the first, per request with two or more tokens (``TPOT_DEFINITION``)."""
    return latency_stats([(r.token_times[-1] - r.token_times[0]) / (len(r.token_times) - 1)
                          for r in requests if len(r.token_times) >= 2])


def batch_ttft(requests: Sequence[RequestTiming]) -> LatencyStats | None:
    """First token − start of the generate call that carried the request (queueing in earlier calls excluded)."""
    return latency_stats([r.token_times[0] - r.start for r in requests if r.token_times])


def queue_time(requests: Sequence[RequestTiming]) -> LatencyStats | None:
    """Submission to the start of prefill, over requests whose prefill start is known."""
    return latency_stats([max(0.0, r.prefill_start - r.submitted_at) for r in requests
                          if r.token_times and r.prefill_start is not None])
