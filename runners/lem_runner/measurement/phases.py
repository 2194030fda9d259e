"""Prefill and decode, split in the same run. Prefill runs while any request is waiting for its first token
([start, first token]); decode while any request is between its first and last token and none is in prefill.
Time spent in neither (tokenising between batches) belongs to no phase. Energy comes from the counter series over
each phase's spans, so its resolution is the series' (the power-sampling interval, or the counter-read interval for a
source without power readings): a phase shorter than that is apportioned, and flagged; with only the window's two
boundary reads there is nothing to split by, and phase energy is null with the reason."""

from __future__ import annotations

from collections.abc import Sequence

from lem_runner.backends.base import GenerationRecord
from lem_runner.contract.result import PhaseFigures, PhaseSplit
from lem_runner.energy.base import EnergyReading
from lem_runner.measurement.intervals import Interval, length, subtract, union

METHOD = ("prefill = union over requests of [generation start, first token]; decode = union of [first token, last "
          "token] minus prefill; energy = the counter series (read at the window's bounds and by the sampler), "
          "apportioned between counter updates by sampled power, evaluated at those instants")


def phase_spans(records: Sequence[GenerationRecord]) -> tuple[list[Interval], list[Interval]]:
    prefill = union((r.start, r.token_times[0]) for r in records if r.token_times)
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
