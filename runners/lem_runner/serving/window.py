"""The serving run's energy windows and its serving-specific quality flags.

The total window is the load window (first submission to the last response's end) when the reading has a series to
cut it from; without one (``energy.sample_hz: 0``, or a source with window totals only) its energy covers the
reading's own span — tracking opened just before the first submission and closed just after the last response — so
that span, not the load window, is the window's duration: energy and duration then cover the same time.
"""

from __future__ import annotations

from collections.abc import Callable

from lem_runner.contract.result import ServingFigures, WindowFigures
from lem_runner.energy.base import EnergyReading
from lem_runner.measurement.quality import Flag
from lem_runner.measurement.windows import window_figures
from lem_runner.serving.records import RequestRecord

#: the finest and coarsest piece the per-request attribution cuts the window into, and at most this many pieces
FINEST_PIECE_S = 0.001
COARSEST_PIECE_S = 0.1
MAX_PIECES = 200_000

LOAD_WINDOW = "the load window: first submission to the last response's end"
READING_SPAN = ("the energy reading's own span: tracking opened just before the first submission and closed just "
                "after the last response ({extra:+.1f} ms beside the load window); the reading has no series to "
                "cut the load window from, so its duration is the reading's")


def piece_length(reading: EnergyReading, records: list[RequestRecord]) -> float:
    """How finely the attribution cuts the window: as fine as the reading resolves (its power samples or counter
    reads), between 1 ms and 0.1 s, and no more than MAX_PIECES pieces."""
    resolution = reading.resolution_s() or COARSEST_PIECE_S
    span = max((r.end or r.submit for r in records), default=0.0) - min((r.submit for r in records), default=0.0)
    return min(COARSEST_PIECE_S, max(resolution, FINEST_PIECE_S, span / MAX_PIECES))


def total_window(reading: EnergyReading, between: Callable[[float, float], float | None] | None, lo: float,
                 hi: float, output_tokens: int, baseline_w: float | None) -> WindowFigures:
    if between is not None or reading.total_j is None:
        return window_figures([(lo, hi)], output_tokens, between(lo, hi) if between else None, baseline_w, lo,
                              LOAD_WINDOW, energy_reason=None if between else reading.unavailable_reason)
    span = ((reading.t_start, reading.t_end) if reading.t_end > reading.t_start
            else (lo, lo + reading.duration_s))  # a source that kept no instants: its duration from the load's start
    extra = (span[1] - span[0] - (hi - lo)) * 1000
    return window_figures([span], output_tokens, reading.total_j, baseline_w, lo, READING_SPAN.format(extra=extra))


def serving_flags(figures: ServingFigures, windows: dict[str, WindowFigures], raised: list[Flag],
                  timeout_s: float | None = None) -> list[Flag]:
    """The serving run's own flags: a steady state that was not steady, ``request_timeouts`` when requests were cut
    by the timeout (``timeout_s``: serving.request_timeout_s), and ``baseline_exceeds_raw`` for any adjusted serving
    figure below 0 (the headline's is raised by quality_flags already)."""
    flags: list[Flag] = []
    if figures.steady_state_quality == "overloaded":
        q, t = figures.steady_state_inflight_by_quarter or [], figures.steady_state_ttft_p50_by_quarter_ms or []
        ttft = f"; TTFT median {t[0] / 1000:.2f} -> {t[-1] / 1000:.2f} s" if t and None not in (t[0], t[-1]) else ""
        flags.append(Flag("overloaded", f"the load is overloaded: completions "
                                        f"{figures.steady_state_completion_rate_rps:.2f}/s fell behind arrivals "
                                        f"{figures.steady_state_arrival_rate_rps:.2f}/s and the queue grew (in flight "
                                        f"{q[0]:.1f} -> {q[-1]:.1f} by quarter{ttft}): latencies grow with the run's "
                                        "length, and the steady-state figures describe no steady state"))
    elif figures.steady_state_quality == "not_steady":
        q = figures.steady_state_inflight_by_quarter or []
        flags.append(Flag("not_steady", f"the load was not steady: requests in flight moved from {q[0]:.1f} to "
                                        f"{q[-1]:.1f} between the first and last quarter of the steady span: the "
                                        "steady-state figures average over a changing load"))
    if figures.n_timeouts:
        flags.append(Flag("request_timeouts", f"{figures.n_timeouts} of {figures.n_requests} request(s) were cut by "
                                              "serving.request_timeout_s" + (f" ({timeout_s:g} s)" if timeout_s else "")
                                              + " before their answer ended: "
                                              "left out of every latency, token count and energy per answer, so "
                                              "long answers are under-represented; raise request_timeout_s"))
    if not any(f.code == "baseline_exceeds_raw" for f in raised):
        negative = [name for name, w in windows.items() if w.adjusted_energy_j is not None and w.adjusted_energy_j < 0]
        if figures.energy_per_request is not None and (figures.energy_per_request.mean_adjusted_j or 0.0) < 0:
            negative.append("energy per request")
        if negative:
            flags.append(Flag("baseline_exceeds_raw", f"the idle baseline exceeds the raw energy over "
                                                      f"{', '.join(negative)}: those adjusted figures are negative "
                                                      "(kept signed); the baseline is stale or was taken hotter than "
                                                      "the run (re-measure it: energy.baseline.mode: fresh)"))
    return flags
