"""``lem results plot``: PNGs a paper or a notebook can use. The efficiency plot puts energy per output token against
throughput for every configuration (a study point's mean with 95 % CI error bars over its cycles; a single run as a
dot) and marks the Pareto front. A power plot per run that kept a timeseries shows power over time with the
measurement window shaded. Nothing is drawn that the result does not hold: with no energy measured (CPU runs) the
efficiency plot shows throughput only and says why; serving runs get serving.png (results/serving_plot.py: J/token
and J/good-token against the offered load, the latency–energy front), and a run with a capacity search gets
capacity-<experiment> (results/capacity_plot.py: goodput and J/good-token per probe, the capacity marked); a
multi-turn run gets conversations-<experiment> (results/conversation_plot.py: latency and prompt length by turn);
runs with quality figures get quality.png (results/quality_plot.py: J/token against KL or task accuracy, with the
front); prefill spans are shaded where the result recorded them (older results hold phase totals only, stated in a
box)."""

from __future__ import annotations

import textwrap
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from lem_runner.contract import backend_names

from llenergymeasure.errors import ConfigError
from llenergymeasure.results.discover import Experiment, find_experiments
from llenergymeasure.results.figure import PlotFile, clipped_errs, new_figure, save_figure
from llenergymeasure.results.frame import timeseries_path
from llenergymeasure.results.metrics import METRICS
from llenergymeasure.results.pareto import pareto_front
from llenergymeasure.results.points import label_params, short_labels, short_model
from llenergymeasure.results.statistics import MetricStats, describe

THROUGHPUT_LABEL = "throughput (output tokens/s)"


FORMATS = ("png", "svg", "pdf")


@dataclass(frozen=True)
class Config:
    """One configuration on the efficiency plot: a study point over its cycles, or one single run."""

    label: str
    backend: str
    tps: MetricStats
    jpt: MetricStats
    reason: str | None  # why energy is null, when it is
    short: str = ""  # what sets it apart from the others (bs=2 · fp32), for the key


def configurations(experiments: Sequence[Experiment], adjusted: bool = False) -> list[Config]:
    """Study sub-runs grouped by (study, point) with statistics over cycles; other runs one each."""
    groups: dict[tuple, list[Experiment]] = defaultdict(list)
    for e in experiments:
        if e.result is not None:
            groups[(e.study, e.label) if e.study and e.label else (None, str(e.path))].append(e)
    out = []
    params = []
    several_studies = len({study for study, _ in groups if study}) > 1
    for (study, key), runs in groups.items():
        results = [e.result for e in runs if e.result is not None]
        first = results[0]
        label = f"{study}: {key}" if study else f"{short_model(first.config.model)} {first.experiment_id}"
        params.append({**({"study": study} if several_studies else {}), **label_params(key)} if study else
                      {"run": first.experiment_id})  # the key adds "(backend)" to every entry
        energy = [METRICS["energy_per_token_adjusted_j" if adjusted else "energy_per_token_j"].read(r) for r in results]
        reasons = [r.energy.unavailable_reason for r in results if r.energy.unavailable_reason]
        if adjusted and not reasons:
            reasons = [f"no idle-adjusted figure ({r.energy.baseline_unavailable_reason or 'no idle baseline'})"
                       for r in results if r.adjusted_energy_per_token_j is None]
        out.append(Config(label, first.config.backend, describe([METRICS["output_tokens_per_second"].read(r) for r in results]),
                          describe([v for v in energy if v is not None]), reasons[0] if reasons else None))
    shorts = short_labels(params)
    return [replace(c, short=s or c.label) for c, s in zip(out, shorts)]


def offline_runs(experiments: Sequence[Experiment]) -> list[Experiment]:
    """The runs with a result that are not serving runs: the efficiency figure's (a serving run's throughput is set
    by the load it was offered, so it is drawn against that load in serving.png instead)."""
    return [e for e in experiments if e.result is not None and e.result.serving is None]


def _errs(stats: Sequence[MetricStats]) -> list[float] | None:
    """CI half-widths, or None when no configuration has one (single runs get no stub error bars)."""
    return [s.ci95 or 0.0 for s in stats] if any(s.ci95 for s in stats) else None


def _key(fig, configs: Sequence[Config]) -> None:
    """The numbered key under the axes: ``1  bs=1 · fp32 (pytorch)``; long labels wrap rather than squeeze."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="none") for _ in configs]
    ncols = 1 if len(configs) <= 4 else 2 if len(configs) <= 12 else 3
    width = {1: 110, 2: 60, 3: 38}[ncols]
    labels = [f"{i}  " + _shorten(f"{c.short} ({c.backend})", width) for i, c in enumerate(configs, 1)]
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=7, handlelength=0,
               handletextpad=0, title="key", title_fontsize=7, frameon=False)


def _shorten(text: str, width: int) -> str:
    """Cut from the middle: run ids differ at their ends (…-c2-20250101-120000)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def place_labels(ax, xy: Sequence[tuple[float, float]], texts: Sequence[str],
                 errs: Sequence[tuple[float, float]] | None = None, avoid_px: float = 9.0) -> list:
    """Number labels beside their points, each at the first of twelve offsets whose box overlaps no other label,
    no point's marker or error bar and stays inside the axes (the least-overlapping one when none is free)."""
    fig = ax.figure
    fig.canvas.draw()  # final layout, so display coordinates hold
    renderer = fig.canvas.get_renderer()
    from matplotlib.transforms import Bbox

    markers = [Bbox.from_bounds(px - avoid_px / 2, py - avoid_px / 2, avoid_px, avoid_px)
               for px, py in ax.transData.transform(xy)]
    for (x, y), (ex, ey) in zip(xy, errs or []):  # error bars as thin boxes
        (x0, y0), (x1, y1) = ax.transData.transform([(x - ex, y - ey), (x + ex, y + ey)])
        (cx, cy) = ax.transData.transform((x, y))
        markers += [Bbox.from_extents(x0, cy - 2, x1, cy + 2), Bbox.from_extents(cx - 2, y0, cx + 2, y1)]
    axes_box = ax.get_window_extent(renderer)
    offsets = [(6, 6), (6, -12), (-6, 6), (-6, -12), (0, 10), (0, -16), (10, -3), (-10, -3),
               (14, 12), (-14, 12), (14, -20), (-14, -20)]
    placed: list[Bbox] = []
    out = []
    for (x, y), text in zip(xy, texts):
        best = None
        for dx, dy in offsets:
            t = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7,
                            ha="left" if dx > 0 else "right" if dx < 0 else "center", fontweight="bold")
            t.set_in_layout(False)  # placed inside the axes: the layout must not move for it
            box = t.get_window_extent(renderer)
            cost = sum(_overlap(box, b) for b in placed + markers)
            if not (axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1 and axes_box.y0 <= box.y0 and box.y1 <= axes_box.y1):
                cost += box.width * box.height
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, t, box)
            else:
                t.remove()
            if cost == 0:
                break
        placed.append(best[2])
        out.append(best[1])
    return out


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def efficiency_figure(configs: Sequence[Config], adjusted: bool = False):
    """The efficiency figure and its axes (not yet written)."""
    measured = [c for c in configs if c.jpt.mean is not None]
    shown = measured or list(configs)
    fig = new_figure(8.0, 5.5 + 0.14 * max(0, len(shown) - 4) / (1 if len(shown) <= 4 else 2 if len(shown) <= 12 else 3))
    ax = fig.add_subplot()
    kind = "idle-adjusted energy" if adjusted else "energy"
    if not measured:
        _throughput_only(ax, configs, adjusted)
    else:
        backends = sorted({c.backend for c in measured})
        markers = dict(zip(backends, "osD^v<>"))
        for b in backends:
            pts = [c for c in measured if c.backend == b]
            spread = [c for c in pts if c.tps.ci95 or c.jpt.ci95]  # single runs: a marker, no zero-length tick
            if spread:
                ax.errorbar([c.tps.mean for c in spread], [c.jpt.mean for c in spread],
                            xerr=clipped_errs([c.tps for c in spread]), yerr=clipped_errs([c.jpt for c in spread]),
                            fmt=markers[b], capsize=3, label=b, markersize=6, color=backend_colour(b))
            single = [c for c in pts if c not in spread]
            if single:
                ax.plot([c.tps.mean for c in single], [c.jpt.mean for c in single], markers[b], markersize=6,
                        color=backend_colour(b), label=None if spread else b)
        front = pareto_front([(c.tps.mean, c.jpt.mean) for c in measured])
        ax.plot([measured[i].tps.mean for i in front], [measured[i].jpt.mean for i in front], "--", color="0.3",
                lw=1, marker="o", mfc="none", ms=14, label="Pareto front")
        ax.set_xlabel(THROUGHPUT_LABEL)
        ax.set_ylabel(f"{kind} per output token (J/token)")
        missing = len(configs) - len(measured)
        note = f"; {missing} configuration(s) without energy left out" if missing else ""
        bars = "error bars: 95 % CI over cycles" if any(c.tps.ci95 or c.jpt.ci95 for c in measured) else \
            "single runs: no error bars"
        ax.set_title(textwrap.fill(f"{kind.capitalize()} per token vs throughput ({bars}){note}", 90), fontsize=9)
        # from zero (a CI reaching below zero says "few cycles", not a negative figure), with room for the labels
        ax.set_xlim(0, 1.12 * max(c.tps.mean + (c.tps.ci95 or 0.0) for c in measured))
        ax.set_ylim(0, 1.12 * max(c.jpt.mean + (c.jpt.ci95 or 0.0) for c in measured))
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
        _key(fig, measured)
        place_labels(ax, [(c.tps.mean, c.jpt.mean) for c in measured], [str(i) for i in range(1, len(measured) + 1)],
                     [(c.tps.ci95 or 0.0, c.jpt.ci95 or 0.0) for c in measured])
    return fig, ax


def efficiency_plot(configs: Sequence[Config], path: Path, adjusted: bool = False) -> PlotFile:
    fig, ax = efficiency_figure(configs, adjusted)
    return save_figure(fig, ax, path)


def backend_colour(backend: str) -> str:
    """One matplotlib cycle colour per backend, in the registry's order (unknown names share the last)."""
    names = backend_names()
    return f"C{names.index(backend) if backend in names else len(names)}"


def _throughput_only(ax, configs: Sequence[Config], adjusted: bool = False) -> None:
    """No energy anywhere (CPU runs): throughput per configuration, and the reason energy is null. Bars are
    numbered (the key under the axes names them), so long labels never squeeze the bars."""
    ys = list(range(len(configs)))
    ax.barh(ys, [c.tps.mean for c in configs], color=[backend_colour(c.backend) for c in configs])
    spread = [(y, c) for y, c in zip(ys, configs) if c.tps.ci95]  # single runs: a bar, no zero-length tick
    if spread:
        ax.errorbar([c.tps.mean for _, c in spread], [y for y, _ in spread],
                    xerr=clipped_errs([c.tps for _, c in spread]), fmt="none", ecolor="black", capsize=3)
    ax.set_yticks(ys, [str(i) for i in range(1, len(configs) + 1)], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(THROUGHPUT_LABEL)
    ax.set_ylabel("configuration (number in the key)")
    reason = next((c.reason for c in configs if c.reason), "no energy figure recorded")
    what = "Idle-adjusted energy not available" if adjusted else "Energy not measured"
    bars = "error bars: 95 % CI over cycles" if any(c.tps.ci95 for c in configs) else "single runs: no error bars"
    ax.set_title(textwrap.fill(f"{what}, so throughput only ({bars}). J/token is null: {reason}", 90), fontsize=9)
    ax.set_xlim(left=0)  # a CI reaching below zero says "few cycles", not negative throughput
    ax.grid(axis="x", alpha=0.3)
    _key(ax.figure, configs)


def power_plot(e: Experiment, series_path: Path, path: Path) -> PlotFile:
    fig, ax = power_figure(e, series_path)
    return save_figure(fig, ax, path)


def power_figure(e: Experiment, series_path: Path):
    """The power-over-time figure of one run and its axes (not yet written)."""
    import pyarrow.parquet as pq

    r = e.result
    assert r is not None
    frame = pq.read_table(series_path).to_pandas()
    fig = new_figure(9.0, 5.0)
    ax = fig.add_subplot()
    total = r.windows.get("total")
    end = total.duration_s if total else r.inference_time_s
    ax.axvspan(0.0, end, color="C2", alpha=0.12, label=f"measurement window (total, 0–{end:.2f} s)")
    shaded = [f"measurement window 0–{end:.2f} s"]
    windowed = r.windows.get("windowed")
    if windowed is not None:
        a, b = windowed.start_offset_s, windowed.start_offset_s + windowed.duration_s
        ax.axvspan(a, b, color="C4", alpha=0.12, label=f"fixed window {a:.2f}–{b:.2f} s")
        shaded.append("fixed window")
    steady = r.windows.get("steady_state")
    if steady is not None:
        ax.axvline(steady.start_offset_s, color="C3", ls=":", lw=1,
                   label=f"steady state begins (its spans total {steady.duration_s:.2f} s)")
    for device, part in frame.groupby("device", sort=True):
        part = part.sort_values("t_s")
        ax.plot(part["t_s"], part["power_w"], lw=1.2, label=f"GPU {device} power")
    b = r.energy.baseline
    if b is not None:
        ax.axhline(b.power_w, color="0.4", ls="--", lw=1, label=f"idle baseline {b.power_w:.0f} W (all devices)")
    spans = r.phases.prefill_spans_s if r.phases is not None else None
    for i, (a, b) in enumerate(spans or []):
        ax.axvspan(a, b, color="C1", alpha=0.35, lw=0, label="prefill (decode elsewhere in the window)" if i == 0 else None)
    if spans:
        shaded.append("prefill spans (orange)")
    if r.phases is not None:
        lines = [f"{n}: {p.time_s:.2f} s, " + ("energy null" if p.energy_j is None else f"{p.energy_j:.3g} J")
                 + ("" if p.energy_share is None else f" ({p.energy_share:.0%})")
                 for n, p in (("prefill", r.phases.prefill), ("decode", r.phases.decode))]
        ax.text(0.01, 0.99, "phase totals:\n" + "\n".join(lines), transform=ax.transAxes,
                va="top", fontsize=7, bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})
    ax.set_xlabel("time from the start of the measurement window (s)")
    ax.set_ylabel("power (W)")
    missing = "" if spans else "; prefill spans not recorded in this result (totals in the box)"
    ax.set_title(f"Power over time · {e.experiment_id}\n"
                 + textwrap.fill(f"shaded: {', '.join(shaded)}{missing}", 100), fontsize=9)
    baseline = r.energy.baseline
    peak = max(float(frame["power_w"].max()), baseline.power_w if baseline is not None else 0.0)
    ax.set_ylim(bottom=0, top=peak * 1.35 if peak > 0 else None)  # headroom for the phase box above the line
    fig.legend(fontsize=7, loc="outside lower center", ncols=2, frameon=False)
    ax.grid(alpha=0.3)
    return fig, ax


def plot_results(directory: Path, out_dir: Path | None = None, adjusted: bool = False,
                 fmt: str = "png") -> list[PlotFile]:
    """Write efficiency.<fmt> and one power-<experiment>.<fmt> per run with a timeseries (fmt: png, or svg / pdf
    for vector output); returns what was written."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: '{fmt}' is not one of {', '.join(FORMATS)}")
    experiments = find_experiments(directory)
    ok = [e for e in experiments if e.result is not None]
    if not ok:
        raise ConfigError(f"{directory}: every experiment failed; nothing to plot")
    out_dir = out_dir or directory / "plots"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"-o: '{out_dir}' exists and is not a directory") from None
    offline = offline_runs(ok)  # serving runs have their own figure (serving.<fmt>), against the offered load
    written = [efficiency_plot(configurations(offline, adjusted), out_dir / f"efficiency.{fmt}", adjusted)] \
        if offline else []
    from llenergymeasure.results.energy_latency_plot import energy_latency_plot
    from llenergymeasure.results.operating_points import points

    dial = energy_latency_plot(points(ok, adjusted), out_dir / f"energy_latency.{fmt}", adjusted)
    written += [dial] if dial is not None else []
    from llenergymeasure.results.quality_plot import quality_plot

    quality = quality_plot(points(offline, adjusted), out_dir / f"quality.{fmt}", adjusted)
    written += [quality] if quality is not None else []
    from llenergymeasure.results.serving_plot import serving_plot, serving_points

    serving = serving_plot(serving_points(ok, adjusted), out_dir / f"serving.{fmt}", adjusted)
    written += [serving] if serving is not None else []
    from llenergymeasure.results.capacity_plot import capacity_plot, capacity_runs

    written += [capacity_plot(e, out_dir / f"capacity-{e.experiment_id}.{fmt}") for e in capacity_runs(ok)]
    from llenergymeasure.results.conversation_plot import conversation_plot, conversation_runs

    written += [conversation_plot(e, out_dir / f"conversations-{e.experiment_id}.{fmt}")
                for e in conversation_runs(ok)]
    for e in ok:
        series = timeseries_path(e)
        if series is not None:
            written.append(power_plot(e, series, out_dir / f"power-{e.experiment_id}.{fmt}"))
    return written
