"""The SLO capacity search (``serving.capacity``; docs/method.md, "Serving", capacity search): bracket, then bisect.

The bracket's low end is probed first (if it fails, the capacity is below the bracket and the search stops), then
its high end (if it passes, the capacity is at least that and the search stops); then the bracket [highest passing,
lowest failing] is halved — at the geometric mean for rates (equal steps in ratio, as capacity is a ratio question),
at the integer midpoint for clients — until (lowest failing - highest passing) / highest passing <= tolerance, the
two are adjacent client counts, or max_probes ran. The capacity is the highest load that passed: within
``tolerance`` below the true one when the probes' verdicts are right.

A probe passes when its good share reaches ``good_share`` *and* the steady-state test (serving/steady.py) calls its
load ``steady``: an overloaded or drifting load fails whatever its good share, because its latencies depend on how
long it ran rather than on the rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lem_runner.contract.capacity import CapacityConfig, CapacityProbe, CapacityResult
from lem_runner.contract.result import ServingFigures

METHOD = ("bracket, then bisect: the bracket's low end is probed, then its high end, then [highest passing, lowest "
          "failing] is halved ({how}) until (lowest failing - highest passing) / highest passing <= {tol:g}{adj} or "
          "{max} probes ran. Each probe is the configured load (serving.n_requests or duration_s, same seed, so the "
          "same prompts, lengths and arrival draws scaled to the rate) in its own energy window on the one server, "
          "which is idle and has its caches reset between probes. A probe passes when good_share >= {share:g} and "
          "the steady-state test calls its load steady (overloaded or not_steady fails it). The capacity is the "
          "highest passing load; the run's headline is that probe's")
BASELINE = ("one idle baseline, taken before the first probe on the warm idle server, reused for every probe: the "
            "probes run on the same server in the same session, so its idle draw is the same; taking one per probe "
            "would only add idle time")


@dataclass
class ProbeRun:
    """What a probe measured: its serving figures, and whatever the caller needs to build the run's result from it."""

    figures: ServingFigures
    payload: Any = None
    requests_file: str | None = None


def verdict(figures: ServingFigures, good_share: float) -> str:
    """pass | below_good_share | overloaded | not_steady | no_steady_state | failed (see CapacityProbe.verdict)."""
    if figures.n_ok == 0:
        return "failed"
    if figures.steady_state_quality is None:
        return "no_steady_state"
    if figures.steady_state_quality != "steady":
        return figures.steady_state_quality
    if figures.good_share is None or figures.good_share < good_share:
        return "below_good_share"
    return "pass"


def _summary(index: int, load: float, run: ProbeRun, good_share: float) -> CapacityProbe:
    f = run.figures
    v = verdict(f, good_share)
    return CapacityProbe(
        index=index, load=load, passed=v == "pass", verdict=v, n_requests=f.n_requests, good_share=f.good_share,
        goodput_rps=f.goodput_rps, steady_state_quality=f.steady_state_quality, achieved_rate_rps=f.achieved_rate_rps,
        duration_s=f.duration_s, ttft_p50_ms=f.ttft.p50_ms if f.ttft else None,
        tpot_p50_ms=f.tpot.p50_ms if f.tpot else None,
        energy_j=(f.energy_per_completed_request_j * f.n_ok if f.energy_per_completed_request_j is not None
                  else None),
        energy_per_good_token_j=f.energy_per_good_token_j, energy_per_request_j=f.energy_per_completed_request_j,
        requests_file=run.requests_file)


def midpoint(low: float, high: float, integer: bool) -> float | None:
    """The next load to probe between a passing ``low`` and a failing ``high``; None when nothing lies between."""
    if integer:
        mid = (int(low) + int(high)) // 2
        return float(mid) if low < mid < high else None
    return math.sqrt(low * high)


def search(cap: CapacityConfig, probe: Callable[[int, float], ProbeRun]) -> tuple[CapacityResult, list[ProbeRun]]:
    """Run the search, calling ``probe(index, load)`` for each probe; the result block and every probe's run (the
    one at ``headline_probe`` is the run's headline)."""
    integer = cap.knob == "concurrency"
    low, high = cap.bracket
    probes: list[CapacityProbe] = []
    runs: list[ProbeRun] = []

    def run(load: float) -> bool:
        r = probe(len(probes), load)
        runs.append(r)
        probes.append(_summary(len(probes), load, r, cap.good_share))
        return probes[-1].passed

    passing: float | None = None
    failing: float | None = None
    if not run(low):
        failing, found, why = low, "below_min", f"the bracket's low end {low:g} failed ({probes[-1].verdict})"
    elif run(high):
        passing, found, why = high, "at_least_max", f"the bracket's high end {high:g} passed"
    else:
        passing, failing, found = low, high, "bracketed"
        why = ""
        while True:
            if (failing - passing) / passing <= cap.tolerance:
                why = f"resolution {(failing - passing) / passing:.3g} <= tolerance {cap.tolerance:g}"
                break
            mid = midpoint(passing, failing, integer)
            if mid is None:
                why = f"adjacent client counts {passing:g} and {failing:g}"
                break
            if len(probes) >= cap.max_probes:
                why = f"max_probes {cap.max_probes} reached"
                break
            if run(mid):
                passing = mid
            else:
                failing = mid
    at = next((p for p in probes if p.load == passing and p.passed), None) if passing is not None else None
    head = at if at is not None else min(probes, key=lambda p: p.load)
    f = runs[head.index].figures
    how = "at the integer midpoint of the clients" if integer else "at the geometric mean of the rates"
    result = CapacityResult(
        knob=cap.knob, good_share_target=cap.good_share, slo=f.slo or {}, bracket=(low, high),
        tolerance=cap.tolerance, capacity=passing,
        capacity_rps=(passing if not integer else f.achieved_rate_rps) if at is not None else None,
        first_failing=failing, found=found,
        resolution=(failing - passing) / passing if passing is not None and failing is not None else None,
        stop_reason=why,
        goodput_rps=f.goodput_rps if at is not None else None,
        energy_per_good_token_j=f.energy_per_good_token_j if at is not None else None,
        energy_per_good_token_adjusted_j=f.energy_per_good_token_adjusted_j if at is not None else None,
        energy_per_request_j=f.energy_per_completed_request_j if at is not None else None,
        energy_unavailable_reason=(f.energy_unavailable_reason if at is not None else
                                   "no probe passed: there is no capacity to give an energy at"),
        headline_probe=head.index, baseline=BASELINE,
        method=METHOD.format(how=how, tol=cap.tolerance, adj=" (or the clients are adjacent)" if integer else "",
                             max=cap.max_probes, share=cap.good_share),
        probes=probes)
    return result, runs
