"""Prefill and decode, split in the same run. Prefill runs while any request is being prefilled ([prefill start,
first token]); decode while any request is between its first and last token and none is in prefill. A request waiting
in the engine's queue is in neither: its prefill starts when the engine schedules it, not when it was submitted. Time
spent in neither (tokenising between batches) belongs to no phase. Energy comes from the counter series over each
phase's spans, so its resolution is the series' (the power-sampling interval, or the counter-read interval for a
source without power readings): a phase shorter than that is apportioned, and flagged; with only the window's two
boundary reads there is nothing to split by, and phase energy is null with the reason.

Prefill start. Where the engine says when it began a request (``GenerationRecord.scheduled``: the PyTorch backend's
batch start, vLLM's first-scheduled time when its request stats are on) that is used. Otherwise it is estimated from
the engine's steps: a request's prefill ran in the step that produced its first token, and that step began when the
step before it ended, i.e. at the latest token time of any request before this request's first token (or at the
generate call's start when there is none). Known error: a prompt prefilled in chunks over several steps (chunked
prefill) counts only its last chunk's step, and steps timestamped on arrival in the runner (vLLM's DELTA outputs,
TensorRT-LLM's streamed responses) put the boundary where the runner saw it, up to the IPC hop late."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from lem_runner.contract.result import PhaseFigures, PhaseSplit
from lem_runner.energy.base import EnergyReading
from lem_runner.measurement.intervals import Interval, length, subtract, union
from lem_runner.records import GenerationRecord

METHOD = ("prefill = union over requests of [prefill start, first token], prefill start being the engine's scheduling "
          "time where it gives one, else the end of the engine step before the one that produced the request's first "
          "token (queueing is in neither phase); decode = union of [first token, last token] minus prefill; energy = "
          "the counter series (read at the window's bounds and by the sampler), apportioned between counter updates by "
          "sampled power (the first sample's power held back to the first counter point, the last's out to the closing "
          "read), evaluated at those instants")


def prefill_starts(records: Sequence[GenerationRecord]) -> list[float | None]:
    """When each request's prefill began: the engine's own time where given, else estimated from the step before the
    one that produced its first token; None for a request with no tokens."""
    steps = sorted({t for r in records for t in r.token_times})
    out: list[float | None] = []
    for r in records:
        if not r.token_times:
            out.append(None)
        elif r.scheduled is not None:
            out.append(min(r.scheduled, r.token_times[0]))
        else:
            i = bisect.bisect_left(steps, r.token_times[0])
            out.append(max(r.start, steps[i - 1]) if i > 0 else r.start)
    return out


def phase_spans(records: Sequence[GenerationRecord]) -> tuple[list[Interval], list[Interval]]:
    starts = prefill_starts(records)
    prefill = union((s, r.token_times[0]) for r, s in zip(records, starts) if s is not None)
    decoding = union((r.token_times[0], r.token_times[-1]) for r in records if len(r.token_times) >= 2)
    return prefill, subtract(decoding, prefill)


#: at most this many prefill spans are kept in the result (a long continuous-batching run can have thousands)
MAX_SPANS = 1000


def split_phases(records: Sequence[GenerationRecord], reading: EnergyReading, prefill_flops: float | None,
                 decode_flops: float | None, origin: float = 0.0) -> PhaseSplit:
    prefill, decode = phase_spans(records)
    e_pre = e_dec = None
    reason = reading.sub_span_reason()
    if reason is None:
        e_pre = sum(reading.energy_between(a, b) or 0.0 for a, b in prefill)
        e_dec = sum(reading.energy_between(a, b) or 0.0 for a, b in decode)
    both = (e_pre or 0.0) + (e_dec or 0.0)
    return PhaseSplit(
        prefill=PhaseFigures(time_s=length(prefill), energy_j=e_pre, flops=prefill_flops,
                             energy_share=e_pre / both if e_pre is not None and both > 0 else None,
                             tokens=sum(r.input_tokens for r in records)),
        decode=PhaseFigures(time_s=length(decode), energy_j=e_dec, flops=decode_flops,
                            energy_share=e_dec / both if e_dec is not None and both > 0 else None,
                            tokens=sum(max(0, r.output_tokens - 1) for r in records)),
        method=METHOD,
        energy_unavailable_reason=reason,
        prefill_spans_s=[(a - origin, b - origin) for a, b in prefill] if len(prefill) <= MAX_SPANS else None,
    )
