"""The spans headline figures can cover: total (the whole measured run), steady_state (only while the engine is
saturated: ramp-up and tail excluded) and windowed (a fixed span from the start). Tokens are counted by their
timestamps, energy from the counter series over exactly the same span."""

from __future__ import annotations

from collections.abc import Sequence

from lem_runner.contract.result import WindowFigures
from lem_runner.energy.base import EnergyReading
from lem_runner.measurement.baseline import adjusted_energy
from lem_runner.measurement.flops import request_flops
from lem_runner.measurement.intervals import Interval, length, union
from lem_runner.records import GenerationRecord, ModelShape, ParameterCounts

STEADY_METHOD = ("spans where at least {saturation:.0%} of the peak number of requests were decoding (between a "
                 "request's first and last token); tokens counted by timestamp, the first token of each span "
                 "marking its start; energy from the counter series over the same spans (apportioned between counter "
                 "updates by sampled power, held out to the series' first and last counter points)")


def decoding_concurrency(records: Sequence[GenerationRecord]) -> list[tuple[float, float, int]]:
    """Piecewise-constant number of requests decoding: (start, end, count) segments between token events."""
    events: list[tuple[float, int]] = []
    for r in records:
        if len(r.token_times) >= 2:
            events += [(r.token_times[0], 1), (r.token_times[-1], -1)]
    events.sort()
    segments, level = [], 0
    for (t, delta), nxt in zip(events, [*events[1:], None]):
        level += delta
        if nxt is not None and nxt[0] > t and level > 0:
            segments.append((t, nxt[0], level))
    return segments


def saturated_spans(records: Sequence[GenerationRecord], saturation: float) -> list[Interval]:
    segments = decoding_concurrency(records)
    if not segments:
        return []
    peak = max(level for _, _, level in segments)
    return union((a, b) for a, b, level in segments if level >= saturation * peak)


def tokens_in(records: Sequence[GenerationRecord], spans: list[Interval]) -> int:
    """Tokens with a timestamp in some (start, end] span: a span's opening token was produced before it began."""
    return sum(1 for r in records for t in r.token_times if any(a < t <= b for a, b in spans))


def _cumulative_flops(counts: ParameterCounts, shape: ModelShape | None, n_in: int, j: int) -> float:
    """FLOPs of a request's first ``j`` output tokens (the first carries the prefill)."""
    return sum(request_flops(counts, shape, n_in, j)) if j > 0 else 0.0


def window_flops(records: Sequence[GenerationRecord], spans: list[Interval], counts: ParameterCounts,
                 shape: ModelShape | None) -> float:
    """FLOPs of the output tokens counted in the spans (by timestamp, as ``tokens_in``): token j of a request costs
    what its j-th forward pass does, so a span holding a request's first token holds its prefill."""
    total = 0.0
    for r in records:
        for j, t in enumerate(r.token_times, start=1):
            if any(a < t <= b for a, b in spans):
                total += (_cumulative_flops(counts, shape, r.input_tokens, j)
                          - _cumulative_flops(counts, shape, r.input_tokens, j - 1))
    return total


def span_energy(reading: EnergyReading, spans: list[Interval]) -> tuple[float | None, str | None]:
    """Joules over the spans from the counter series, or None and why (no energy, window totals only, or a series
    with nothing inside the window to resolve a sub-span by)."""
    reason = reading.sub_span_reason()
    if reason is not None:
        return None, reason
    return sum(reading.energy_between(a, b) or 0.0 for a, b in spans), None


def span_energy_per_device(reading: EnergyReading, spans: list[Interval]) -> dict[str, float] | None:
    """Joules over the spans per device (None where ``span_energy`` is None)."""
    if reading.sub_span_reason() is not None or reading.tracks is None:
        return None
    return {dev: sum(track.between(a, b) for a, b in spans) for dev, track in reading.tracks.items()}


def window_figures(spans: list[Interval], output_tokens: int, energy: float | None, baseline_w: float | None,
                   origin: float, method: str, energy_reason: str | None = None,
                   flops: float | None = None) -> WindowFigures:
    duration = length(spans)
    adjusted = adjusted_energy(energy, baseline_w, duration)
    return WindowFigures(
        start_offset_s=(spans[0][0] - origin) if spans else 0.0,
        duration_s=duration,
        output_tokens=output_tokens,
        tokens_per_second=output_tokens / duration if duration > 0 else 0.0,
        energy_j=energy,
        adjusted_energy_j=adjusted,
        energy_per_token_j=energy / output_tokens if energy is not None and output_tokens else None,
        adjusted_energy_per_token_j=adjusted / output_tokens if adjusted is not None and output_tokens else None,
        mean_power_w=energy / duration if energy is not None and duration > 0 else None,
        energy_unavailable_reason=energy_reason if energy is None else None,
        flops=flops,
        method=method,
    )
