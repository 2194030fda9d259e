"""serving.<fmt>, drawn when results hold serving runs (``scenario: serving``): energy per output token and per good
output token (of requests that met the SLO) against the offered load — the request rate, or the closed-loop clients
of a concurrency sweep — and the latency–energy Pareto front: tok/s per user against J/token.

tok/s per user is 1000 / TPOT p50 (ms): the median request's decode speed after its first token. A study point is the
mean over its cycles (95 % CI bars); a single run is a dot. With no energy measured nothing is drawn at zero: the
figure says why J/token is null and shows throughput and tok/s per user against the load instead."""

from __future__ import annotations

import textwrap
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llenergymeasure.results.discover import Experiment
from llenergymeasure.results.figure import PlotFile, clipped_errs, new_figure, save_figure
from llenergymeasure.results.metrics import METRICS
from llenergymeasure.results.pareto import pareto_front
from llenergymeasure.results.statistics import MetricStats, describe

LOAD_LABELS = {"rate": "offered request rate (requests/s)", "clients": "closed-loop clients (concurrency)"}
PER_USER_LABEL = "tok/s per user (1000 / TPOT p50 ms)"


@dataclass(frozen=True)
class ServingPoint:
    """One serving configuration: a study point over its cycles, or one run."""

    label: str
    backend: str
    load_kind: str  # "rate" | "clients"
    load: float
    tps: MetricStats  # output tok/s of the headline window
    per_user: MetricStats  # 1000 / TPOT p50
    jpt: MetricStats  # J per output token (raw or idle-adjusted)
    jgood: MetricStats  # J per output token of requests that met the SLO
    reason: str | None  # why energy is null, when it is
    slo: bool  # an SLO was set (so J/good-token can exist)


def _load(r) -> tuple[str, float] | None:
    s = r.serving
    if s.offered_rate_rps is not None:
        return "rate", s.offered_rate_rps
    if s.clients is not None:
        return "clients", float(s.clients)
    return None


def serving_points(experiments: Sequence[Experiment], adjusted: bool = False) -> list[ServingPoint]:
    """Serving runs grouped by (study, point); other runs one each. Runs without a load figure are left out."""
    groups: dict[tuple, list] = defaultdict(list)
    for e in experiments:
        r = e.result
        if r is not None and r.serving is not None and _load(r) is not None:
            groups[(e.study, e.label) if e.study and e.label else (None, str(e.path))].append(r)
    out = []
    for (study, key), results in groups.items():
        first = results[0]
        kind, load = _load(first)
        jpt = [METRICS["energy_per_token_adjusted_j" if adjusted else "energy_per_token_j"].read(r) for r in results]
        jgood = [r.serving.energy_per_good_token_adjusted_j if adjusted else r.serving.energy_per_good_token_j
                 for r in results]
        per_user = [1000.0 / r.serving.tpot.p50_ms for r in results
                    if r.serving.tpot is not None and r.serving.tpot.p50_ms and r.serving.tpot.p50_ms > 0]
        reasons = [r.energy.unavailable_reason or r.serving.energy_unavailable_reason for r in results]
        reasons = [x for x in reasons if x] or (["no idle-adjusted figure (no idle baseline)"]
                                                if adjusted and None in jpt else [])
        out.append(ServingPoint(f"{study}: {key}" if study else first.experiment_id, first.config.backend, kind, load,
                                describe([r.output_tokens_per_second for r in results]), describe(per_user),
                                describe([v for v in jpt if v is not None]),
                                describe([v for v in jgood if v is not None]),
                                reasons[0] if reasons else None, bool(first.serving.slo)))
    return sorted(out, key=lambda p: (p.load_kind, p.backend, p.load))


def _bars(stats: Sequence[MetricStats]):

    return clipped_errs(stats)


def _load_axis(ax, loads: Sequence[float]) -> None:
    """Offered loads are usually geometric (1, 4, 16 req/s): a log axis when they span 4x or more, ticked at the
    loads themselves; a single load sits in the middle of a range around it rather than at an edge."""
    from matplotlib.ticker import FixedLocator, NullLocator

    distinct = sorted({x for x in loads if x > 0})
    if not distinct:
        return
    lo, hi = distinct[0], distinct[-1]
    if len(distinct) == 1 or hi / lo >= 4:
        ax.set_xscale("log")
        ax.set_xlim(lo / 2, hi * 2) if len(distinct) == 1 else ax.set_xlim(lo / 1.5, hi * 1.5)
        ax.xaxis.set_major_locator(FixedLocator(distinct))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{x:g}" for x in distinct])
    else:
        pad = (hi - lo) * 0.1
        ax.set_xlim(max(0.0, lo - pad), hi + pad)


def _value_labels(ax, xs: Sequence[float], ys: Sequence[float], unit: str) -> None:
    """Each point's value beside it when there are only a few (one or two points say little on their own)."""
    if len(xs) > 2:
        return
    for x, y in zip(xs, ys):
        ax.annotate(f"{y:.3g} {unit}", (x, y), textcoords="offset points", xytext=(8, -4), fontsize=8)


def serving_figure(points: Sequence[ServingPoint], adjusted: bool = False):
    """The two-panel figure and its two axes (not yet written)."""

    kind = "rate" if any(p.load_kind == "rate" for p in points) else "clients"
    shown = [p for p in points if p.load_kind == kind]
    other = len(points) - len(shown)
    measured = [p for p in shown if p.jpt.mean is not None]
    what = "idle-adjusted energy" if adjusted else "energy"
    fig = new_figure(12.0, 5.0)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    backends = sorted({p.backend for p in shown})
    markers = dict(zip(backends, "osD^v<>"))
    note = f"; {other} run(s) with a {'client count' if kind == 'rate' else 'rate'} instead left out" if other else ""
    if not measured:
        reason = next((p.reason for p in shown if p.reason), "no energy figure recorded")
        for b in backends:
            sub = [p for p in shown if p.backend == b]
            left.errorbar([p.load for p in sub], [p.tps.mean for p in sub], yerr=_bars([p.tps for p in sub]),
                          fmt=markers[b] + "-", capsize=3, label=b)
            _value_labels(left, [p.load for p in sub], [p.tps.mean for p in sub], "tok/s")
            sub = [p for p in sub if p.per_user.mean is not None]
            right.errorbar([p.load for p in sub], [p.per_user.mean for p in sub],
                           yerr=_bars([p.per_user for p in sub]), fmt=markers[b] + "-", capsize=3, label=b)
            _value_labels(right, [p.load for p in sub], [p.per_user.mean for p in sub], "tok/s")
        _load_axis(right, [p.load for p in shown])
        left.set_ylabel("output tokens/s")
        right.set_ylabel(PER_USER_LABEL)
        right.set_xlabel(LOAD_LABELS[kind])
        fig.suptitle(textwrap.fill(f"Energy not measured, so no J/token, J/good-token or latency–energy front; "
                                   f"throughput against the load instead. J/token is null: {reason}{note}", 130),
                     fontsize=9)
    else:
        for b in backends:
            sub = [p for p in measured if p.backend == b]
            left.errorbar([p.load for p in sub], [p.jpt.mean for p in sub], yerr=_bars([p.jpt for p in sub]),
                          fmt=markers[b] + "-", capsize=3, label=f"J/token ({b})")
            good = [p for p in sub if p.jgood.mean is not None]
            if good:
                left.errorbar([p.load for p in good], [p.jgood.mean for p in good],
                              yerr=_bars([p.jgood for p in good]), fmt=markers[b] + "--", mfc="none", capsize=3,
                              label=f"J/good-token ({b})")
                _value_labels(left, [p.load for p in good], [p.jgood.mean for p in good], "J/good-token")
            _value_labels(left, [p.load for p in sub], [p.jpt.mean for p in sub], "J/token")
        front_pts = [p for p in measured if p.per_user.mean is not None]
        for b in backends:
            sub = [p for p in front_pts if p.backend == b]
            right.errorbar([p.per_user.mean for p in sub], [p.jpt.mean for p in sub],
                           xerr=_bars([p.per_user for p in sub]), yerr=_bars([p.jpt for p in sub]), fmt=markers[b],
                           capsize=3, label=b)
        for p in front_pts:
            unit = " req/s" if kind == "rate" else " clients"
            right.annotate(f"{p.load:g}{unit}", (p.per_user.mean, p.jpt.mean), textcoords="offset points",
                           xytext=(6, 6), fontsize=7)
        front = pareto_front([(p.per_user.mean, p.jpt.mean) for p in front_pts])
        if front:
            right.plot([front_pts[i].per_user.mean for i in front], [front_pts[i].jpt.mean for i in front], "--",
                       color="0.3", lw=1, marker="o", mfc="none", ms=14, label="Pareto front")
        left.set_ylabel(f"{what} per output token (J/token)")
        right.set_ylabel(f"{what} per output token (J/token)")
        right.set_xlabel(PER_USER_LABEL)
        no_good = "" if any(p.jgood.mean is not None for p in measured) else (
            "; J/good-token: no SLO set" if not any(p.slo for p in measured) else "; no request met the SLO")
        missing = len(shown) - len(measured)
        left_out = f"; {missing} configuration(s) without energy left out" if missing else ""
        bars = "error bars: 95 % CI over cycles" if any(p.jpt.ci95 for p in measured) else "single runs: no error bars"
        fig.suptitle(textwrap.fill(f"Serving: {what} per token against the load, and the latency–energy front "
                                   f"({bars}){no_good}{left_out}{note}", 130), fontsize=9)
        xs = [p.per_user.mean for p in front_pts]
        if xs:  # from zero, the lone point (or the points and their CIs) well inside the axes
            reach = max(p.per_user.mean + (p.per_user.ci95 or 0.0) for p in front_pts)
            right.set_xlim(0, max(xs) * 2.0 if len(set(xs)) == 1 else reach * 1.1)
    for ax in (left, right):
        top = max((y for line in ax.get_lines() for y in line.get_ydata()), default=0.0)
        ax.set_ylim(bottom=0, top=top * (1.6 if len({p.load for p in shown}) == 1 else 1.25) or None)
    _load_axis(left, [p.load for p in shown])
    left.set_xlabel(LOAD_LABELS[kind])
    left.set_title("against the offered load", fontsize=9)
    right.set_title("latency–energy front" if measured else "tok/s per user against the load", fontsize=9)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return fig, (left, right)


def serving_plot(points: Sequence[ServingPoint], path: Path, adjusted: bool = False):
    """Write the figure (PNG, SVG or PDF by the suffix); None when there is no serving run."""
    if not points:
        return None

    fig, (left, _) = serving_figure(points, adjusted)
    written = save_figure(fig, left, path)
    return PlotFile(written.path, fig.get_suptitle().replace("\n", " "), written.xlabel, written.ylabel)
