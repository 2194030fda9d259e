"""What every ``lem results plot`` figure is drawn with: a matplotlib figure with its own renderer, an atomic save
that reports the axes' units, and 95 % CI error bars clipped at zero. Its own module so the efficiency plot
(results/plot.py) and the per-kind plots it calls (serving, capacity, conversation, quality, energy–latency) share
these without importing each other."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llenergymeasure.results.statistics import MetricStats


@dataclass(frozen=True)
class PlotFile:
    """A written figure and what its axes say (so callers and tests can check the units)."""

    path: Path
    title: str
    xlabel: str
    ylabel: str


def new_figure(width: float = 8.0, height: float = 5.5):
    """A constrained-layout figure with an Agg canvas attached (a renderer, so label placement can measure text)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, ax, path: Path) -> PlotFile:
    """Write ``fig`` atomically in the format ``path``'s suffix names (png when it has none)."""
    from lem_runner.contract.atomic import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png")
    atomic_write_bytes(path, buf.getvalue())
    return PlotFile(path, ax.get_title().replace("\n", " "), ax.get_xlabel(), ax.get_ylabel())


def clipped_errs(stats: Sequence[MetricStats]) -> list[list[float]] | None:
    """Asymmetric error bars (below, above) of the 95 % CI, the lower one stopping at zero: these figures (tok/s,
    J/token, rates) cannot be negative, and a CI reaching below zero says "few cycles", not a negative value."""
    if not any(s.ci95 for s in stats):
        return None
    return [[min(s.ci95 or 0.0, max(s.mean or 0.0, 0.0)) for s in stats], [s.ci95 or 0.0 for s in stats]]
