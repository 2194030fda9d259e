"""Serving figures from the per-request records and the energy reading of the load window.

Definitions (docs/method.md, "Serving"):
- load window: the first request's submission to the last request's end;
- in flight: a request between its submission and its end;
- steady state: serving/steady.py (the load phase's pieces at or above the median number in flight, with a
  stationarity test);
- idle: spans of the window with no request in flight;
- energy per request: the window is cut at every change of the in-flight set and every ``step_s``; each piece's
  energy (counter series) is split across the requests in flight in it by the work each did there — its output
  tokens streamed in the piece, plus its prompt tokens spread evenly over its prefill interval (server-side prefill
  start where the engine gave one, else its submission, to its first token): every token, prompt or output, counts
  the same (~2N FLOPs); a piece where in-flight requests did no token work is split by time in flight. Pieces with
  nothing in flight are idle energy. Attributed + idle = the window's energy, exactly; the idle-adjusted energy
  (piece energy - baseline x piece length, signed) is split by the same weights, so it adds up the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lem_runner.contract.result import EnergyPerRequest, ServingFigures
from lem_runner.contract.serving import SLOConfig
from lem_runner.energy.counter import interpolate
from lem_runner.measurement.intervals import length
from lem_runner.measurement.latency import latency_stats, percentile
from lem_runner.serving.records import RequestRecord
from lem_runner.serving.steady import DEFINITION as STEADY_DEFINITION
from lem_runner.serving.steady import steady_state, weighted_median

EnergyBetween = Callable[[float, float], float | None]

#: at most this many steady spans are listed in the result (their sum and envelope are always there)
MAX_LISTED_SPANS = 1000
ATTRIBUTION = ("each piece of the window between changes of the in-flight set (and at most {step:g} s long) has its "
               "energy split across the requests in flight by their work in it: output tokens streamed in it plus "
               "prompt tokens spread evenly over the request's prefill interval ({prefill}); every token, prompt or "
               "output, counts the same; by time in flight where none did token work; pieces with none in flight "
               "are idle energy. Idle-adjusted energy (piece energy - baseline power x piece length, signed) is "
               "split by the same weights. Statistics over ok requests only")
PREFILL_CLIENT = "[submission, first token] as the client saw it: queueing in the server included"


def _span(r: RequestRecord) -> tuple[float, float]:
    return r.submit, r.end if r.end is not None else r.submit


def inflight_segments(records: Sequence[RequestRecord], lo: float, hi: float) -> list[tuple[float, float, int]]:
    """Piecewise-constant number in flight over [lo, hi], zero-level pieces included."""
    events = sorted([(a, 1) for a, b in map(_span, records) if b > a] + [(b, -1) for a, b in map(_span, records)
                                                                          if b > a])
    segments, level, t = [], 0, lo
    for when, delta in events:
        if when > t:
            segments.append((t, when, level))
            t = when
        level += delta
    if hi > t:
        segments.append((t, hi, level))
    return segments


def _tokens_in(r: RequestRecord, a: float, b: float) -> int:
    return sum(n for t, n in zip(r.chunk_times, r.chunk_tokens) if a < t <= b)


def _prefill_interval(r: RequestRecord) -> tuple[float, float] | None:
    if r.first_token is None:
        return None
    start = r.prefill_start if r.prefill_start is not None and r.submit <= r.prefill_start <= r.first_token \
        else r.submit
    return start, r.first_token


def work_curve(r: RequestRecord) -> tuple[list[float], list[float]]:
    """Cumulative tokens of ``r``'s work over time, as points to interpolate: its prompt and first chunk spread
    evenly over its prefill interval, each later chunk's tokens over the gap since the chunk before it (the stream
    shows no finer where the work was done). Empty when it never produced a token."""
    interval = _prefill_interval(r)
    if interval is None or not r.chunk_times:
        return [], []
    p0, p1 = interval
    first = [n for t, n in zip(r.chunk_times, r.chunk_tokens) if t <= p1]
    xs, ys = [min(p0, p1 - 1e-9), p1], [0.0, float((r.input_tokens or 0) + sum(first))]
    for t, n in zip(r.chunk_times, r.chunk_tokens):
        if t > p1:
            xs.append(t)
            ys.append(ys[-1] + n)
    return xs, ys


def prefill_source(records: Sequence[RequestRecord]) -> str:
    """Where the prefill intervals came from, for the method text."""
    server = sum(1 for r in records if r.prefill_start is not None and r.first_token is not None)
    if not server:
        return PREFILL_CLIENT
    return (f"server-side prefill start for {server} of {len(records)} requests, else {PREFILL_CLIENT}")


@dataclass(frozen=True)
class Attribution:
    raw: list[float]  # joules per request, in the records' order
    idle: float
    adjusted: list[float] | None  # signed; None without a baseline
    idle_adjusted: float | None


def attribute_energy(records: Sequence[RequestRecord], energy_between: EnergyBetween, lo: float, hi: float,
                     step_s: float = 0.1, baseline_w: float | None = None) -> Attribution:
    """Joules per request and idle joules over [lo, hi], raw and idle-adjusted; see the module's definition."""
    per = [0.0] * len(records)
    adj = [0.0] * len(records)
    idle = idle_adj = 0.0
    cuts = sorted({lo, hi, *(t for r in records for t in _span(r) if lo < t < hi)})
    pieces: list[tuple[float, float]] = []
    for a, b in zip(cuts, cuts[1:]):
        n = max(1, int((b - a) / step_s + 0.999999))
        pieces += [(a + (b - a) * k / n, a + (b - a) * (k + 1) / n) for k in range(n)]
    starts = sorted(range(len(records)), key=lambda i: records[i].submit)
    ends = sorted(range(len(records)), key=lambda i: _span(records[i])[1])
    curves = [work_curve(r) for r in records]
    in_flight: set[int] = set()
    si = ei = 0
    for a, b in pieces:  # in time order: the in-flight set is swept, not searched
        energy = energy_between(a, b) or 0.0
        adjusted = energy - baseline_w * (b - a) if baseline_w is not None else 0.0
        mid = (a + b) / 2
        while si < len(starts) and records[starts[si]].submit <= mid:
            in_flight.add(starts[si])
            si += 1
        while ei < len(ends) and _span(records[ends[ei]])[1] <= mid:
            in_flight.discard(ends[ei])
            ei += 1
        live = sorted(in_flight)
        if not live:
            idle += energy
            idle_adj += adjusted
            continue
        work = [interpolate(*curves[i], b) - interpolate(*curves[i], a) if curves[i][0] else 0.0 for i in live]
        if sum(work) == 0:
            work = [min(b, _span(records[i])[1]) - max(a, records[i].submit) for i in live]
        total = sum(work)
        for i, w in zip(live, work):
            per[i] += energy * w / total
            adj[i] += adjusted * w / total
    if baseline_w is None:
        return Attribution(per, idle, None, None)
    return Attribution(per, idle, adj, idle_adj)


NOT_SEPARATED = ("not separated: no response streamed reasoning apart from its answer (no reasoning parser on the "
                 "server, or a route that does not apply one: vLLM separates reasoning on /v1/chat/completions "
                 "with --reasoning-parser, which lem starts it with and sends that route for where "
                 "vllm.reasoning_parser is set; otherwise lem sends /v1/completions)")


def answer_figures(ok: Sequence[RequestRecord]) -> dict:
    """Time to first answer token where the stream separates reasoning from the answer, else its reason."""
    if not any(r.reasoning_seen for r in ok):
        return {"ttfat_unavailable_reason": NOT_SEPARATED}
    reached = [r for r in ok if r.first_answer_token is not None]  # one that did not reason: its first token
    reasoning = sum(r.reasoning_tokens for r in ok)
    answer = sum(r.answer_tokens for r in ok)
    return {"ttfat": latency_stats([r.first_answer_token - r.submit for r in reached]),  # type: ignore[operator]
            "ttfat_not_reached": len(ok) - len(reached), "reasoning_tokens": reasoning, "answer_tokens": answer,
            "reasoning_tokens_mean": reasoning / len(ok) if ok else None,
            "answer_tokens_mean": answer / len(ok) if ok else None}


def _meets(r: RequestRecord, slo: SLOConfig) -> bool:
    if not r.ok or r.first_token is None or r.end is None:
        return False
    if slo.ttft_ms is not None and (r.first_token - r.submit) * 1000 > slo.ttft_ms:
        return False
    if slo.e2e_ms is not None and (r.end - r.submit) * 1000 > slo.e2e_ms:
        return False
    tpot = _tpot(r)
    return not (slo.tpot_ms is not None and tpot is not None and tpot * 1000 > slo.tpot_ms)


def _tpot(r: RequestRecord) -> float | None:
    if r.first_token is None or r.output_tokens < 2 or not r.chunk_times:
        return None
    return (r.chunk_times[-1] - r.first_token) / (r.output_tokens - 1)


def _rate(times: list[float]) -> float | None:
    """(n - 1) / (last - first): the rate of a sequence of instants."""
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None


def steady_spans(records: list[RequestRecord]) -> list[tuple[float, float]]:
    """The steady state's spans (absolute times), all of them however many (the result lists at most
    MAX_LISTED_SPANS)."""
    if not records:
        return []
    lo = min(r.submit for r in records)
    hi = max(_span(r)[1] for r in records)
    steady = steady_state(records, inflight_segments(records, lo, hi))
    return steady.spans if steady is not None else []


def serving_figures(records: list[RequestRecord], *, arrival: str, offered_rate: float | None, clients: int | None,
                    slo: SLOConfig, energy_between: EnergyBetween | None, energy_reason: str | None,
                    baseline_w: float | None, step_s: float = 0.1) -> ServingFigures:
    """Every serving figure; sets each record's ``energy_j`` (and ``adjusted_energy_j``) when energy was measured."""
    sent = sorted(records, key=lambda r: r.submit)
    lo = sent[0].submit if sent else 0.0
    hi = max((_span(r)[1] for r in records), default=lo)
    duration = hi - lo
    ok = [r for r in records if r.ok]
    segments = inflight_segments(records, lo, hi)
    levels = [(b - a, lv) for a, b, lv in segments]
    changes = [(a - lo, lv) for a, _, lv in segments]
    lags = sorted((r.submit - r.scheduled) * 1000 for r in records if r.scheduled is not None)
    steady = steady_state(records, segments)
    idle_spans = [(a, b) for a, b, lv in segments if lv == 0]
    errors = [r.error for r in records if r.error]
    out_tokens = sum(r.output_tokens for r in ok)

    f = dict(
        arrival=arrival, offered_rate_rps=offered_rate, clients=clients, n_requests=len(records), n_ok=len(ok),
        n_errors=sum(r.status == "error" for r in records), n_timeouts=sum(r.status == "timeout" for r in records),
        error_examples=list(dict.fromkeys(errors))[:5],
        schedule_rate_rps=_rate([r.scheduled for r in records if r.scheduled is not None]),
        achieved_rate_rps=_rate([r.submit for r in records]),
        completed_rate_rps=len(ok) / duration if duration > 0 else 0.0, duration_s=duration,
        output_tokens_per_s=out_tokens / duration if duration > 0 else 0.0,
        inflight_mean=sum(d * lv for d, lv in levels) / duration if duration > 0 else 0.0,
        inflight_median=weighted_median(segments) if segments else 0.0,
        inflight_max=max((lv for _, lv in levels), default=0),
        inflight_timeline=changes if len(changes) <= 4000 else None,
        schedule_lag_p50_ms=percentile(lags, 50) if lags else None,
        schedule_lag_p99_ms=percentile(lags, 99) if lags else None,
        ttft=latency_stats([r.first_token - r.submit for r in ok if r.first_token is not None]),
        tpot=latency_stats([t for t in map(_tpot, ok) if t is not None]),
        itl=latency_stats([b - a for r in ok for a, b in zip(r.chunk_times, r.chunk_times[1:])]),
        e2e=latency_stats([r.end - r.submit for r in ok if r.end is not None]),
        **answer_figures(ok),
        steady_state_definition=STEADY_DEFINITION, idle_time_s=sum(b - a for a, b in idle_spans),
        energy_attribution_method=ATTRIBUTION.format(step=step_s, prefill=prefill_source(records)),
        energy_unavailable_reason=energy_reason,
    )
    if steady is not None:
        f.update(steady_state_start_s=steady.spans[0][0] - lo, steady_state_duration_s=length(steady.spans),
                 steady_state_spans_s=([(a - lo, b - lo) for a, b in steady.spans]
                                       if len(steady.spans) <= MAX_LISTED_SPANS else None),
                 steady_state_envelope_s=(steady.envelope[0] - lo, steady.envelope[1] - lo),
                 steady_state_output_tokens=sum(_tokens_in(r, a, b) for r in ok for a, b in steady.spans),
                 steady_state_quality=steady.quality, steady_state_arrival_rate_rps=steady.arrival_rate_rps,
                 steady_state_completion_rate_rps=steady.completion_rate_rps,
                 steady_state_inflight_by_quarter=steady.inflight_by_quarter,
                 steady_state_ttft_p50_by_quarter_ms=steady.ttft_p50_by_quarter_ms)
    good = [r for r in records if _meets(r, slo)] if slo.any else None
    if good is not None:
        f.update(slo={k: v for k, v in slo.model_dump().items() if v is not None}, n_good=len(good),
                 good_share=len(good) / len(records) if records else None,
                 goodput_rps=len(good) / duration if duration > 0 else None,
                 good_output_tokens=sum(r.output_tokens for r in good))
    total = energy_between(lo, hi) if energy_between is not None and duration > 0 else None
    if total is not None:
        adjusted_total = total - baseline_w * duration if baseline_w is not None else None
        shares = attribute_energy(records, energy_between, lo, hi, step_s, baseline_w)
        for k, r in enumerate(records):
            r.energy_j = shares.raw[k]
            r.adjusted_energy_j = shares.adjusted[k] if shares.adjusted is not None else None
        f["idle_energy_j"] = shares.idle
        f["idle_adjusted_energy_j"] = shares.idle_adjusted
        vals = sorted(r.energy_j for r in ok)
        if vals:
            adjusted_ok = [r.adjusted_energy_j for r in ok] if shares.adjusted is not None else None
            f["energy_per_request"] = EnergyPerRequest(
                n=len(vals), mean_j=sum(vals) / len(vals), p50_j=percentile(vals, 50), p90_j=percentile(vals, 90),
                mean_adjusted_j=sum(adjusted_ok) / len(adjusted_ok) if adjusted_ok else None,  # type: ignore[arg-type]
                failed_j=sum(r.energy_j or 0.0 for r in records if not r.ok))
            f["energy_per_completed_request_j"] = total / len(ok)
            if adjusted_total is not None:
                f["energy_per_completed_request_adjusted_j"] = adjusted_total / len(ok)
        if steady is not None:
            e = sum(energy_between(a, b) or 0.0 for a, b in steady.spans)
            f["steady_state_energy_j"] = e
            if baseline_w is not None:
                f["steady_state_adjusted_energy_j"] = e - baseline_w * length(steady.spans)
            if f.get("steady_state_output_tokens"):
                f["steady_state_energy_per_token_j"] = e / f["steady_state_output_tokens"]
        if good is not None and f["good_output_tokens"]:
            f["energy_per_good_token_j"] = total / f["good_output_tokens"]
            if adjusted_total is not None:
                f["energy_per_good_token_adjusted_j"] = adjusted_total / f["good_output_tokens"]
            f["good_requests_energy_per_token_j"] = sum(r.energy_j or 0.0 for r in good) / f["good_output_tokens"]
    return ServingFigures(**f)
