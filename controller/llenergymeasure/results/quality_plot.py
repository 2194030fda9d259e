"""quality.png: energy per output token against quality for every configuration — KL from the study's reference
(lower is better) and task accuracy (higher is better), one panel each where some configuration has it — with the
Pareto front (no other configuration is both cheaper and better). Drawn only where energy and a quality figure were
both measured: a run without energy (a CPU run) has no place on it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from llenergymeasure.results.figure import PlotFile, clipped_errs, new_figure
from llenergymeasure.results.operating_points import Point
from llenergymeasure.results.pareto import pareto_front

#: the panels: (figure in Point.quality, axis label, higher is better)
PANELS = (("fidelity_kl_mean_nats", "KL from the reference (nats/token, lower is better)", False),
          ("task_accuracy", "task accuracy (higher is better)", True))


def quality_plot(pts: Sequence[Point], path: Path, adjusted: bool = False):
    """The figure (PNG, SVG or PDF by the path's suffix), or None when no configuration has energy and a quality
    figure."""

    panels = [(name, label, up, [p for p in pts if p.jpt.mean is not None and p.quality[name].mean is not None])
              for name, label, up in PANELS]
    panels = [panel for panel in panels if panel[3]]
    if not panels:
        return None
    from lem_runner.contract.atomic import atomic_write_bytes

    fig = new_figure(5.5 * len(panels) + 1.0, 5.0)
    kind = "idle-adjusted energy" if adjusted else "energy"
    axes = []
    for col, (name, xlabel, up, sub) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), col + 1)
        for b in sorted({p.backend for p in sub}):
            mine = [p for p in sub if p.backend == b]
            ax.errorbar([p.quality[name].mean for p in mine], [p.jpt.mean for p in mine],
                        xerr=clipped_errs([p.quality[name] for p in mine]), yerr=clipped_errs([p.jpt for p in mine]),
                        fmt="o", capsize=3, label=b, markersize=6)
        for i, p in enumerate(sub):
            ax.annotate(p.label.split(": ", 1)[-1], (p.quality[name].mean, p.jpt.mean), textcoords="offset points",
                        xytext=(6, 6 if i % 2 == 0 else -12), fontsize=7)
        # lower J/token is better; the front maximises its first value, so a lower-is-better quality is negated
        front = pareto_front([(p.quality[name].mean if up else -p.quality[name].mean, p.jpt.mean) for p in sub])
        ax.plot([sub[i].quality[name].mean for i in front], [sub[i].jpt.mean for i in front], "--", color="0.3",
                lw=1, marker="o", mfc="none", ms=14, label="Pareto front")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{kind} per output token (J/token)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        axes.append(ax)
    axes[0].set_title(f"{kind.capitalize()} per token vs quality (error bars: 95 % CI over cycles)", fontsize=9)
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png")
    atomic_write_bytes(path, buf.getvalue())
    return PlotFile(path, axes[0].get_title(), axes[0].get_xlabel(), axes[0].get_ylabel())
