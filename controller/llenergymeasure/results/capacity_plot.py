"""capacity-<experiment>.<fmt>, one per run with a capacity search (``serving.capacity``): each probe's goodput and
J per good output token against its offered load, the capacity marked (a vertical line at the highest passing load,
the lowest failing one dashed), passing probes filled and failing ones hollow with their verdict. With no energy
measured the J/good-token panel says why instead of drawing anything at zero."""

from __future__ import annotations

import textwrap
from pathlib import Path

from llenergymeasure.results.discover import Experiment
from llenergymeasure.results.figure import PlotFile, new_figure, save_figure

LOAD_LABELS = {"rate": "offered request rate (requests/s)", "concurrency": "closed-loop clients (concurrency)"}


def capacity_runs(experiments: list[Experiment]) -> list[Experiment]:
    return [e for e in experiments if e.result is not None and e.result.serving is not None
            and e.result.serving.capacity is not None]


def capacity_figure(e: Experiment):
    """The two-panel figure and its axes (not yet written)."""

    c = e.result.serving.capacity  # type: ignore[union-attr]
    probes = sorted(c.probes, key=lambda p: p.load)
    unit = "clients" if c.knob == "concurrency" else "req/s"
    fig = new_figure(12.0, 5.0)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    passed = [p for p in probes if p.passed]
    failed = [p for p in probes if not p.passed]
    for ax in (left, right):
        if c.capacity is not None:
            ax.axvline(c.capacity, color="C2", lw=1.5, label=f"capacity {c.capacity:.3g} {unit}")
        if c.first_failing is not None:
            ax.axvline(c.first_failing, color="C3", lw=1, ls="--",
                       label=f"lowest failing {c.first_failing:.3g} {unit}")
    left.plot([p.load for p in probes], [p.goodput_rps or 0.0 for p in probes], "-", color="0.6", lw=1)
    left.plot([p.load for p in passed], [p.goodput_rps or 0.0 for p in passed], "o", color="C0", label="passed")
    left.plot([p.load for p in failed], [p.goodput_rps or 0.0 for p in failed], "o", mfc="none", color="C3",
              label="failed")
    for p in failed:
        left.annotate(p.verdict.replace("_", " "), (p.load, p.goodput_rps or 0.0), textcoords="offset points",
                      xytext=(5, 5), fontsize=7)
    left.set_ylabel("goodput (req/s meeting the SLO)")
    left.set_title(f"goodput per probe ({len(probes)} probes)", fontsize=9)
    measured = [p for p in probes if p.energy_per_good_token_j is not None]
    if measured:
        right.plot([p.load for p in measured], [p.energy_per_good_token_j for p in measured], "-", color="0.6", lw=1)
        ok = [p for p in measured if p.passed]
        bad = [p for p in measured if not p.passed]
        right.plot([p.load for p in ok], [p.energy_per_good_token_j for p in ok], "s", color="C0", label="passed")
        right.plot([p.load for p in bad], [p.energy_per_good_token_j for p in bad], "s", mfc="none", color="C3",
                   label="failed")
        right.set_ylabel("energy per good output token (J)")
        right.set_ylim(bottom=0, top=1.25 * max(p.energy_per_good_token_j for p in measured))
        right.set_title("J per good output token per probe" + (
            f"; at capacity {c.energy_per_good_token_j:.3g} J" if c.energy_per_good_token_j is not None else ""),
            fontsize=9)
    else:
        reason = c.energy_unavailable_reason or e.result.energy.unavailable_reason or "no energy figure recorded"
        right.text(0.5, 0.5, textwrap.fill(f"J per good token is null: {reason}", 60), transform=right.transAxes,
                   ha="center", va="center", fontsize=8, wrap=True)
        right.set_ylabel("energy per good output token (J)")
        right.set_title("energy not measured", fontsize=9)
    left.set_ylim(bottom=0, top=1.25 * max([p.goodput_rps or 0.0 for p in probes] + [1e-9]))
    lo, hi = min(p.load for p in probes), max(p.load for p in probes)
    for ax in (left, right):
        ax.set_xlim(lo - 0.08 * (hi - lo or lo), hi + 0.08 * (hi - lo or lo))
        ax.set_xlabel(LOAD_LABELS[c.knob])
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    found = "none in the bracket" if c.capacity is None else f"{c.capacity:.3g} {unit} ({c.found})"
    slo = ", ".join(f"{k} {v:g}" for k, v in c.slo.items())
    fig.suptitle(textwrap.fill(f"Capacity search · {e.experiment_id}: capacity {found}, the highest load at which "
                               f">= {c.good_share_target:g} of requests met the SLO ({slo}) and the load was "
                               "steady", 130), fontsize=9)
    return fig, (left, right)


def capacity_plot(e: Experiment, path: Path):
    """Write the figure (PNG, SVG or PDF by the suffix)."""

    fig, (left, _) = capacity_figure(e)
    written = save_figure(fig, left, path)
    return PlotFile(written.path, fig.get_suptitle().replace("\n", " "), written.xlabel, written.ylabel)
