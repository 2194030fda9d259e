"""energy_latency.png: energy per output token against latency (TTFT p50, and TPOT p50 — the time per output token)
for every configuration, labelled with its GPU operating point, with the Pareto front (no other configuration is
both faster and cheaper). Drawn when at least one configuration ran at a GPU operating point (a ``gpu:`` section)
and energy and latency were measured."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from llenergymeasure.results.figure import PlotFile, clipped_errs, new_figure
from llenergymeasure.results.operating_points import Point
from llenergymeasure.results.pareto import pareto_front


def energy_latency_plot(pts: Sequence[Point], path: Path, adjusted: bool = False):
    """The two-panel figure (PNG, SVG or PDF by the path's suffix), or None when no configuration set an operating point or has energy and latency."""

    measured = [p for p in pts if p.jpt.mean is not None and p.latency["ttft_p50_ms"].mean is not None]
    if not measured or all(p.setting == "default clocks" for p in measured):
        return None
    from lem_runner.contract.atomic import atomic_write_bytes

    fig = new_figure(11.0, 5.0)
    kind = "idle-adjusted energy" if adjusted else "energy"
    axes = []
    for col, (name, xlabel) in enumerate((("ttft_p50_ms", "TTFT p50 (ms)"),
                                          ("tpot_p50_ms", "time per output token p50, TPOT (ms)"))):
        ax = fig.add_subplot(1, 2, col + 1)
        pts_ = [p for p in measured if p.latency[name].mean is not None]
        for b in sorted({p.backend for p in pts_}):
            sub = [p for p in pts_ if p.backend == b]
            ax.errorbar([p.latency[name].mean for p in sub], [p.jpt.mean for p in sub],
                        xerr=clipped_errs([p.latency[name] for p in sub]), yerr=clipped_errs([p.jpt for p in sub]),
                        fmt="o", capsize=3, label=b, markersize=6)
        for i, p in enumerate(pts_):
            ax.annotate(p.setting + (" (clock drift)" if p.flags else ""), (p.latency[name].mean, p.jpt.mean),
                        textcoords="offset points", xytext=(6, 6 if i % 2 == 0 else -12), fontsize=7)
        # lower latency and lower energy are both better: negate latency for the maximising front
        front = pareto_front([(-p.latency[name].mean, p.jpt.mean) for p in pts_])
        ax.plot([pts_[i].latency[name].mean for i in front], [pts_[i].jpt.mean for i in front], "--", color="0.3",
                lw=1, marker="o", mfc="none", ms=14, label="Pareto front")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{kind} per output token (J/token)")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        axes.append(ax)
    axes[0].set_title(f"{kind.capitalize()} per token vs latency across operating points "
                      "(error bars: 95 % CI over cycles)", fontsize=9)
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png")
    atomic_write_bytes(path, buf.getvalue())
    return PlotFile(path, axes[0].get_title(), axes[0].get_xlabel(), axes[0].get_ylabel())
