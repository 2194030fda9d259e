"""The SLO capacity search: ``serving.capacity`` (what to search) and ``serving.capacity`` in the result (what it
found). Definitions: docs/method.md, "Serving", capacity search.

The search varies one knob of the configured load — the offered rate of an open loop (constant, poisson, gamma) or
the clients of a closed loop (concurrency) — and finds the highest value at which a probe *passes*: at least
``good_share`` of its requests met ``serving.slo`` and its load was steady by the steady-state test. Each probe is
the configured load (``serving.n_requests`` or ``serving.duration_s``, lengths, seed) at the probe's value, measured
in its own energy window, on the one server the run started and warmed up.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

OPEN_LOOP = ("constant", "poisson", "gamma")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


def bisections(low: float, high: float, tolerance: float, integer: bool) -> int:
    """Probes the bisection needs, in the worst case, to narrow [low, high] until (fail - pass) / pass <= tolerance
    (clients: or until they are adjacent integers)."""
    n = 0
    while high - low > 0 and (high - low) / low > tolerance:
        if integer:
            mid = (low + high) // 2
            if mid <= low:
                break
            low, high = (mid, high) if high - mid >= mid - low else (low, mid)
        else:
            low = math.sqrt(low * high)  # geometric: every branch narrows by the same ratio
        n += 1
    return n


class CapacityConfig(_Section):
    """Search the highest load at which at least ``good_share`` of requests meet ``serving.slo``: the bracket's ends
    are probed first (``rate_min``/``rate_max`` for an open loop, ``concurrency_min``/``concurrency_max`` for
    ``arrival: concurrency``), then the bracket is bisected (geometrically for rates, by integers for clients) until
    (lowest failing - highest passing) / highest passing <= ``tolerance``. Each probe is the configured load
    (``n_requests`` or ``duration_s``) at the probe's rate or clients; a probe passes when its good share reaches
    ``good_share`` and the steady-state test calls its load steady (an overloaded or drifting probe fails)."""

    good_share: float = Field(0.9, gt=0, le=1, description="share of a probe's requests (sent) that must meet the "
                              "SLO for the probe to pass, in (0, 1]")
    rate_min: float | None = Field(None, gt=0, le=100_000, description="bracket's low end, requests/s (open loop)")
    rate_max: float | None = Field(None, gt=0, le=100_000, description="bracket's high end, requests/s (open loop)")
    concurrency_min: int | None = Field(None, ge=1, le=100_000,
                                        description="bracket's low end, clients (arrival: concurrency)")
    concurrency_max: int | None = Field(None, ge=1, le=100_000,
                                        description="bracket's high end, clients (arrival: concurrency)")
    tolerance: float = Field(0.05, gt=0, le=1, description="stop when (lowest failing - highest passing) / highest "
                             "passing <= this: the capacity found is within this share below the true one")
    max_probes: int = Field(8, ge=2, le=64, description="most probes, the bracket's two included")

    @model_validator(mode="after")
    def _bracket(self) -> CapacityConfig:
        for low, high in (("rate_min", "rate_max"), ("concurrency_min", "concurrency_max")):
            a, b = getattr(self, low), getattr(self, high)
            if (a is None) != (b is None):
                raise ValueError(f"give both {low} and {high}")
            if a is not None and a >= b:
                raise ValueError(f"{low} {a:g} must be below {high} {b:g}")
        if self.rate_min is not None and self.concurrency_min is not None:
            raise ValueError("give rate_min/rate_max (open loop) or concurrency_min/concurrency_max (arrival: "
                             "concurrency), not both")
        if self.rate_min is None and self.concurrency_min is None:
            raise ValueError("give the bracket: rate_min and rate_max (open loop) or concurrency_min and "
                             "concurrency_max (arrival: concurrency)")
        integer = self.concurrency_min is not None
        low, high = (self.concurrency_min, self.concurrency_max) if integer else (self.rate_min, self.rate_max)
        need = 2 + bisections(low, high, self.tolerance, integer)  # type: ignore[arg-type]
        if need > self.max_probes:
            raise ValueError(f"the bracket {low:g}..{high:g} needs up to {need} probes to reach tolerance "
                             f"{self.tolerance:g}; max_probes is {self.max_probes} (narrow the bracket, or raise "
                             "tolerance or max_probes)")
        return self

    @property
    def knob(self) -> str:
        return "concurrency" if self.concurrency_min is not None else "rate"

    @property
    def bracket(self) -> tuple[float, float]:
        if self.knob == "concurrency":
            return float(self.concurrency_min), float(self.concurrency_max)  # type: ignore[arg-type]
        return self.rate_min, self.rate_max  # type: ignore[return-value]


def check_capacity(serving) -> None:
    """The capacity search against the rest of the serving section (ValueError naming the field)."""
    cap = serving.capacity
    if cap is None:
        return
    if not serving.slo.any:
        raise ValueError("capacity needs serving.slo with at least one bound (ttft_ms, tpot_ms or e2e_ms): a "
                         "probe passes by the share of requests meeting it")
    if serving.arrival not in (*OPEN_LOOP, "concurrency"):
        raise ValueError(f"capacity with arrival '{serving.arrival}' has no rate or clients to vary (use constant, "
                         "poisson, gamma or concurrency)")
    if serving.arrival == "concurrency" and cap.knob != "concurrency":
        raise ValueError("capacity with arrival 'concurrency' varies the clients: give concurrency_min and "
                         "concurrency_max, not rate_min/rate_max")
    if serving.arrival != "concurrency" and cap.knob != "rate":
        raise ValueError(f"capacity with arrival '{serving.arrival}' varies the rate: give rate_min and rate_max, not "
                         "concurrency_min/concurrency_max")
    if serving.rate is not None or serving.concurrency is not None:
        raise ValueError("capacity sets each probe's rate or clients: leave serving.rate and "
                         "serving.concurrency out")


PROBE_VERDICTS = ("pass", "below_good_share", "overloaded", "not_steady", "no_steady_state", "failed")


class CapacityProbe(_Record):
    """One probe of the search: the configured load at one rate (or client count), measured in its own window."""

    index: int = Field(..., ge=0, description="order in which the probe ran (0 first)")
    load: float = Field(..., gt=0, description="the probe's offered rate (requests/s) or clients")
    passed: bool = Field(..., description="good_share >= the target and the load steady")
    verdict: Literal["pass", "below_good_share", "overloaded", "not_steady", "no_steady_state", "failed"] = Field(
        ..., description="pass; below_good_share; overloaded / not_steady (the steady-state test refused the load, "
                         "whatever its good share); no_steady_state (no piece of the load reached its in-flight "
                         "median); failed (no request succeeded)")
    n_requests: int = Field(..., ge=0, description="requests sent")
    good_share: float | None = Field(None, description="requests meeting the SLO / requests sent")
    goodput_rps: float | None = Field(None, description="requests meeting the SLO / the probe's load window")
    steady_state_quality: str | None = Field(None, description="the steady-state test's verdict on the probe's load")
    achieved_rate_rps: float | None = Field(None, description="(requests sent - 1) / (last submission - first)")
    duration_s: float = Field(..., ge=0, description="the probe's load window: first submission to last end")
    ttft_p50_ms: float | None = None
    tpot_p50_ms: float | None = None
    energy_j: float | None = Field(None, description="raw energy of the probe's load window; null when not measured")
    energy_per_good_token_j: float | None = Field(
        None, description="raw energy of the probe's window / output tokens of its requests that met the SLO")
    energy_per_request_j: float | None = Field(
        None, description="raw energy of the probe's window / its requests that completed ok (idle and failed "
                          "requests' energy included; serving.energy_per_completed_request_j)")
    requests_file: str | None = Field(None, description="the probe's requests (Parquet) beside result.json")


class CapacityResult(_Record):
    """What the search found. The run's headline figures, its ``serving`` figures and requests.parquet are the
    capacity probe's (the highest-load probe that passed); with none passing, the lowest-load probe's."""

    knob: Literal["rate", "concurrency"] = Field(..., description="what was varied: the open loop's rate or the "
                                                 "closed loop's clients")
    good_share_target: float
    slo: dict[str, float] = Field(..., description="the bounds (ms) requests were held to")
    bracket: tuple[float, float] = Field(..., description="(low, high) as configured")
    tolerance: float
    capacity: float | None = Field(
        None, description="the highest probed load that passed (requests/s, or clients); null when the bracket's low "
                          "end failed")
    capacity_rps: float | None = Field(
        None, description="the offered rate at capacity (knob rate: = capacity); a closed loop's achieved rate there")
    first_failing: float | None = Field(
        None, description="the lowest probed load that failed: the true capacity lies in [capacity, first_failing)")
    found: Literal["bracketed", "at_least_max", "below_min"] = Field(
        ..., description="bracketed: capacity <= true < first_failing; at_least_max: the bracket's high end passed "
                         "(the true capacity is that or more); below_min: its low end failed (capacity null)")
    resolution: float | None = Field(None, description="(first_failing - capacity) / capacity when bracketed")
    stop_reason: str
    goodput_rps: float | None = Field(None, description="the capacity probe's goodput (requests meeting the SLO / "
                                      "its load window)")
    energy_per_good_token_j: float | None = Field(
        None, description="at capacity: the capacity probe's raw window energy / output tokens of its requests that "
                          "met the SLO")
    energy_per_good_token_adjusted_j: float | None = Field(
        None, description="at capacity: (window energy - baseline power x window) / good output tokens; signed")
    energy_per_request_j: float | None = Field(
        None, description="at capacity: the capacity probe's raw window energy / its requests that completed ok")
    energy_unavailable_reason: str | None = Field(None, description="why the energy figures are null")
    headline_probe: int = Field(..., ge=0, description="index of the probe whose figures the run's headline holds")
    baseline: str = Field("", description="how the idle baseline was taken for the probes")
    method: str = Field("", description="how the search ran (docs/method.md)")
    probes: list[CapacityProbe] = Field(default_factory=list, description="every probe, in the order run")
