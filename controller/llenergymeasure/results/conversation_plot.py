"""conversations-<experiment>.<fmt>, one per multi-turn run (``serving.conversations``): how the turn index moves
the request figures as each prompt carries the history — TTFT, TPOT and E2E medians, and the mean prompt length
on a second axis, against the turn index; energy per request by turn beside them, or, with no energy measured, why
(nothing drawn at zero)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from llenergymeasure.results.discover import Experiment
from llenergymeasure.results.figure import PlotFile, new_figure, save_figure


def conversation_runs(experiments: list[Experiment]) -> list[Experiment]:
    return [e for e in experiments if e.result is not None and e.result.serving is not None
            and e.result.serving.conversations is not None and e.result.serving.conversations.by_turn]


def conversation_figure(e: Experiment):
    """The two-panel figure and its axes (left: latencies, its twin: prompt tokens; right: energy)."""

    c = e.result.serving.conversations  # type: ignore[union-attr]
    turns = c.by_turn
    fig = new_figure(12.0, 5.0)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name, key, marker in (("TTFT p50", "ttft_p50_ms", "o"), ("TPOT p50", "tpot_p50_ms", "s"),
                              ("E2E p50", "e2e_p50_ms", "^")):
        drawn = [(t.turn, getattr(t, key)) for t in turns if getattr(t, key) is not None]
        if drawn:
            left.plot([x for x, _ in drawn], [y for _, y in drawn], f"-{marker}", label=name)
    left.set_xlabel("turn (0: each conversation's first)")
    left.set_ylabel("median latency (ms)")
    left.set_ylim(bottom=0)
    twin = left.twinx()
    prompt = [(t.turn, t.input_tokens_mean) for t in turns if t.input_tokens_mean is not None]
    if prompt:
        twin.plot([x for x, _ in prompt], [y for _, y in prompt], ":", color="0.4", label="prompt tokens (mean)")
        twin.set_ylabel("prompt tokens, mean (the history grows)")
        twin.set_ylim(bottom=0)
    lines = left.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    if lines:
        left.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="upper left")
    left.set_title(f"latency by turn ({c.n_complete} of {c.n_conversations} conversations complete)", fontsize=9)
    measured = [t for t in turns if t.energy_mean_j is not None]
    if measured:
        right.plot([t.turn for t in measured], [t.energy_mean_j for t in measured], "-o", color="C2")
        right.set_ylim(bottom=0, top=1.25 * max(t.energy_mean_j for t in measured))
        per = c.energy_per_conversation_mean_j
        right.set_title("energy per request by turn" + (f"; per conversation {per:.3g} J" if per is not None
                                                        else ""), fontsize=9)
    else:
        reason = e.result.serving.energy_unavailable_reason or e.result.energy.unavailable_reason \
            or "no energy figure recorded"
        right.text(0.5, 0.5, textwrap.fill(f"energy per turn is null: {reason}", 60), transform=right.transAxes,
                   ha="center", va="center", fontsize=8, wrap=True)
        right.set_title("energy not measured", fontsize=9)
    right.set_xlabel("turn (0: each conversation's first)")
    right.set_ylabel("attributed energy per request, mean (J)")
    for ax in (left, right):
        ax.set_xticks([t.turn for t in turns])
        ax.grid(alpha=0.3)
    fig.suptitle(textwrap.fill(f"Multi-turn conversations · {e.experiment_id}: {c.turns_sent} turns sent; prompts "
                               f"by {c.prompt_format}", 130), fontsize=9)
    return fig, (left, right)


def conversation_plot(e: Experiment, path: Path):
    """Write the figure (PNG, SVG or PDF by the suffix)."""

    fig, (left, _) = conversation_figure(e)
    written = save_figure(fig, left, path)
    return PlotFile(written.path, fig.get_suptitle().replace("\n", " "), written.xlabel, written.ylabel)
