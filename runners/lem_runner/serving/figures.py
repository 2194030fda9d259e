"""Serving figures from the per-request records and the energy reading of the load window.

Definitions (docs/method.md, "Serving"):
- load window: the first request's submission to the last request's end;
- in flight: a request between its submission and its end;
- steady state: from the first moment the number in flight reaches its time-weighted median M (at least 1) to the
  last moment it is still >= M: ramp-up and drain excluded;
- idle: spans of the window with no request in flight;
- energy per request: the window is cut at every change of the in-flight set and every ``step_s``; each piece's
  energy (counter series) is split across the requests in flight in it by the work each did there — its output
  tokens streamed in the piece, plus its prompt tokens in the piece holding its first token (~2N FLOPs a token
  either way); a piece where in-flight requests did no token work (all queued or prefilling) is split by time in
  flight. Pieces with nothing in flight are idle energy. Attributed + idle = the window's energy, exactly.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

from lem_runner.contract.result import EnergyPerRequest, ServingFigures
from lem_runner.contract.serving import SLOConfig
from lem_runner.measurement.latency import latency_stats, percentile
from lem_runner.serving.records import RequestRecord

EnergyBetween = Callable[[float, float], float | None]

STEADY_DEFINITION = ("from the first moment the number of requests in flight reaches its time-weighted median M "
                     "(at least 1) over the load window to the last moment it is still >= M (ramp-up and drain "
                     "excluded); tokens counted by chunk timestamp, energy from the counter series over the span")
ATTRIBUTION = ("each piece of the window between changes of the in-flight set (and at most {step:g} s long) has its "
               "energy split across the requests in flight by their work in it: output tokens streamed plus prompt "
               "tokens at the first token; by time in flight where none did token work; pieces with none in "
               "flight are idle energy")


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


def _weighted_median(segments: list[tuple[float, float, int]]) -> float:
    total = sum(b - a for a, b, _ in segments)
    acc = 0.0
    for _, level in sorted(((b - a, lv) for a, b, lv in segments), key=lambda x: x[1]):
        acc += _
        if acc >= total / 2:
            return float(level)
    return 0.0


def steady_span(segments: list[tuple[float, float, int]]) -> tuple[float, float] | None:
    if not segments:
        return None
    m = max(1.0, _weighted_median(segments))
    above = [(a, b) for a, b, lv in segments if lv >= m]
    if not above:
        return None
    return above[0][0], above[-1][1]


def _tokens_in(r: RequestRecord, a: float, b: float) -> int:
    return sum(n for t, n in zip(r.chunk_times, r.chunk_tokens) if a < t <= b)


def attribute_energy(records: Sequence[RequestRecord], energy_between: EnergyBetween, lo: float, hi: float,
                     step_s: float = 0.1) -> tuple[list[float], float]:
    """Joules per request (in ``records`` order) and idle joules over [lo, hi]; see the module's definition."""
    per = [0.0] * len(records)
    idle = 0.0
    cuts = sorted({lo, hi, *(t for r in records for t in _span(r) if lo < t < hi)})
    pieces: list[tuple[float, float]] = []
    for a, b in zip(cuts, cuts[1:]):
        n = max(1, int((b - a) / step_s + 0.999999))
        pieces += [(a + (b - a) * k / n, a + (b - a) * (k + 1) / n) for k in range(n)]
    starts = sorted((r.submit, i) for i, r in enumerate(records))
    for a, b in pieces:
        energy = energy_between(a, b) or 0.0
        mid = (a + b) / 2
        upto = bisect.bisect_right(starts, (mid, len(records)))
        live = [i for _, i in starts[:upto] if _span(records[i])[1] > mid]
        if not live:
            idle += energy
            continue
        work = [_tokens_in(records[i], a, b) + ((records[i].input_tokens or 0) if records[i].first_token is not None
                                                 and a < records[i].first_token <= b else 0) for i in live]
        if sum(work) == 0:
            work = [min(b, _span(records[i])[1]) - max(a, records[i].submit) for i in live]
        total = sum(work)
        for i, w in zip(live, work):
            per[i] += energy * w / total
    return per, idle


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


def serving_figures(records: list[RequestRecord], *, arrival: str, offered_rate: float | None, clients: int | None,
                    slo: SLOConfig, energy_between: EnergyBetween | None, energy_reason: str | None,
                    baseline_w: float | None, step_s: float = 0.1) -> ServingFigures:
    """Every serving figure; sets each record's ``energy_j`` when energy was measured."""
    sent = sorted(records, key=lambda r: r.submit)
    lo = sent[0].submit if sent else 0.0
    hi = max((_span(r)[1] for r in records), default=lo)
    duration = hi - lo
    ok = [r for r in records if r.ok]
    segments = inflight_segments(records, lo, hi)
    levels = [(b - a, lv) for a, b, lv in segments]
    changes = [(a - lo, lv) for a, _, lv in segments]
    lags = sorted((r.submit - r.scheduled) * 1000 for r in records if r.scheduled is not None)
    steady = steady_span(segments)
    idle_spans = [(a, b) for a, b, lv in segments if lv == 0]
    errors = [r.error for r in records if r.error]
    out_tokens = sum(r.output_tokens for r in ok)

    f = dict(
        arrival=arrival, offered_rate_rps=offered_rate, clients=clients, n_requests=len(records), n_ok=len(ok),
        n_errors=sum(r.status == "error" for r in records), n_timeouts=sum(r.status == "timeout" for r in records),
        error_examples=list(dict.fromkeys(errors))[:5],
        achieved_rate_rps=(len(sent) - 1) / (sent[-1].submit - lo) if len(sent) > 1 and sent[-1].submit > lo else None,
        completed_rate_rps=len(ok) / duration if duration > 0 else 0.0, duration_s=duration,
        output_tokens_per_s=out_tokens / duration if duration > 0 else 0.0,
        inflight_mean=sum(d * lv for d, lv in levels) / duration if duration > 0 else 0.0,
        inflight_median=_weighted_median(segments) if segments else 0.0,
        inflight_max=max((lv for _, lv in levels), default=0),
        inflight_timeline=changes if len(changes) <= 4000 else None,
        schedule_lag_p50_ms=percentile(lags, 50) if lags else None,
        schedule_lag_p99_ms=percentile(lags, 99) if lags else None,
        ttft=latency_stats([r.first_token - r.submit for r in ok if r.first_token is not None]),
        tpot=latency_stats([t for t in map(_tpot, ok) if t is not None]),
        itl=latency_stats([b - a for r in ok for a, b in zip(r.chunk_times, r.chunk_times[1:])]),
        e2e=latency_stats([r.end - r.submit for r in ok if r.end is not None]),
        steady_state_definition=STEADY_DEFINITION, idle_time_s=sum(b - a for a, b in idle_spans),
        energy_attribution_method=ATTRIBUTION.format(step=step_s), energy_unavailable_reason=energy_reason,
    )
    if steady is not None:
        f.update(steady_state_start_s=steady[0] - lo, steady_state_duration_s=steady[1] - steady[0],
                 steady_state_output_tokens=sum(_tokens_in(r, *steady) for r in ok))
    good = [r for r in records if _meets(r, slo)] if slo.any else None
    if good is not None:
        f.update(slo={k: v for k, v in slo.model_dump().items() if v is not None}, n_good=len(good),
                 good_share=len(good) / len(records) if records else None,
                 goodput_rps=len(good) / duration if duration > 0 else None,
                 good_output_tokens=sum(r.output_tokens for r in good))
    total = energy_between(lo, hi) if energy_between is not None and duration > 0 else None
    if total is not None:
        per, _ = attribute_energy(records, energy_between, lo, hi, step_s)
        for r, e in zip(records, per):
            r.energy_j = e
        f["idle_energy_j"] = sum(energy_between(a, b) or 0.0 for a, b in idle_spans)
        adjusted_per = None
        if baseline_w is not None:
            adjusted_per, _ = attribute_energy(
                records, lambda a, b: max(0.0, (energy_between(a, b) or 0.0) - baseline_w * (b - a)), lo, hi, step_s)
        vals = sorted(per)
        if vals:
            f["energy_per_request"] = EnergyPerRequest(
                n=len(vals), mean_j=sum(vals) / len(vals), p50_j=percentile(vals, 50), p90_j=percentile(vals, 90),
                mean_adjusted_j=sum(adjusted_per) / len(adjusted_per) if adjusted_per else None)
        if steady is not None:
            e = energy_between(*steady)
            f["steady_state_energy_j"] = e
            if baseline_w is not None and e is not None:
                f["steady_state_adjusted_energy_j"] = max(0.0, e - baseline_w * (steady[1] - steady[0]))
            if e is not None and f.get("steady_state_output_tokens"):
                f["steady_state_energy_per_token_j"] = e / f["steady_state_output_tokens"]
        if good is not None and f["good_output_tokens"]:
            f["energy_per_good_token_j"] = total / f["good_output_tokens"]
            if baseline_w is not None:
                f["energy_per_good_token_adjusted_j"] = max(0.0, total - baseline_w * duration) / f["good_output_tokens"]
            f["good_requests_energy_per_token_j"] = sum(r.energy_j or 0.0 for r in good) / f["good_output_tokens"]
    return ServingFigures(**f)
