"""The spans headline figures can cover: total (the whole measured run), steady_state (only while the engine is
saturated: ramp-up and tail excluded) and windowed (a fixed span from the start). Tokens are counted by their
timestamps, energy from the counter series over exactly the same span."""

from __future__ import annotations

from collections.abc import Sequence

from lem_runner.backends.base import GenerationRecord
from lem_runner.contract.result import WindowFigures
from lem_runner.energy.base import EnergyReading
from lem_runner.measurement.baseline import adjusted_energy
from lem_runner.measurement.intervals import Interval, length, union

STEADY_METHOD = ("spans where at least {saturation:.0%} of the peak number of requests were decoding (between a "
                 "request's first and last token); tokens counted by timestamp, the first token of each span "
                 "marking its start; energy from the counter series over the same spans")


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


def span_energy(reading: EnergyReading, spans: list[Interval]) -> float | None:
    """Joules over the spans from the counter series; None without one (no energy, or window totals only)."""
    if reading.total_j is None or reading.tracks is None:
        return None
    return sum(reading.energy_between(a, b) or 0.0 for a, b in spans)


def window_figures(spans: list[Interval], output_tokens: int, energy: float | None, baseline_w: float | None,
                   origin: float, method: str) -> WindowFigures:
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
        method=method,
    )
