"""``lem results plot``: PNGs a paper or a notebook can use. The efficiency plot puts energy per output token against
throughput for every configuration (a study point's mean with 95 % CI error bars over its cycles; a single run as a
dot) and marks the Pareto front. A power plot per run that kept a timeseries shows power over time with the
measurement window shaded. Nothing is drawn that the result does not hold: with no energy measured (CPU runs) the
efficiency plot shows throughput only and says why; prefill spans are shaded where the result recorded them (older
results hold phase totals only, stated in a box)."""

from __future__ import annotations

import io
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llenergymeasure.errors import ConfigError
from llenergymeasure.results.discover import Experiment, find_experiments
from llenergymeasure.results.frame import timeseries_path
from llenergymeasure.results.listing import short_model
from llenergymeasure.results.pareto import pareto_front
from llenergymeasure.study.aggregate import MetricStats, describe

THROUGHPUT_LABEL = "throughput (output tokens/s)"


@dataclass(frozen=True)
class PlotFile:
    """A written PNG and what its axes say (so callers and tests can check the units)."""

    path: Path
    title: str
    xlabel: str
    ylabel: str


@dataclass(frozen=True)
class Config:
    """One configuration on the efficiency plot: a study point over its cycles, or one single run."""

    label: str
    backend: str
    tps: MetricStats
    jpt: MetricStats
    reason: str | None  # why energy is null, when it is


def configurations(experiments: Sequence[Experiment], adjusted: bool = False) -> list[Config]:
    """Study sub-runs grouped by (study, point) with statistics over cycles; other runs one each."""
    groups: dict[tuple, list[Experiment]] = defaultdict(list)
    for e in experiments:
        if e.result is not None:
            groups[(e.study, e.label) if e.study and e.label else (None, str(e.path))].append(e)
    out = []
    for (study, key), runs in groups.items():
        results = [e.result for e in runs if e.result is not None]
        first = results[0]
        label = f"{study}: {key}" if study else f"{short_model(first.config.model)} {first.experiment_id}"
        energy = [r.avg_energy_per_token_adjusted_j if adjusted else r.avg_energy_per_token_j for r in results]
        reasons = [r.energy.unavailable_reason for r in results if r.energy.unavailable_reason]
        if adjusted and not reasons:
            reasons = [f"no idle-adjusted figure ({r.energy.baseline_unavailable_reason or 'no idle baseline'})"
                       for r in results if r.avg_energy_per_token_adjusted_j is None]
        out.append(Config(label, first.config.backend, describe([r.output_tokens_per_second for r in results]),
                          describe([v for v in energy if v is not None]), reasons[0] if reasons else None))
    return out


def _figure(width: float = 8.0, height: float = 5.5):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=120, layout="constrained")


def _save(fig, ax, path: Path) -> PlotFile:
    from lem_runner.atomic import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return PlotFile(path, ax.get_title(), ax.get_xlabel(), ax.get_ylabel())


def _err(s: MetricStats) -> float:
    return s.ci95 or 0.0


def efficiency_plot(configs: Sequence[Config], path: Path, adjusted: bool = False) -> PlotFile:
    fig = _figure()
    ax = fig.add_subplot()
    measured = [c for c in configs if c.jpt.mean is not None]
    kind = "idle-adjusted energy" if adjusted else "energy"
    if not measured:
        _throughput_only(ax, configs, adjusted)
    else:
        backends = sorted({c.backend for c in measured})
        markers = dict(zip(backends, "osD^v<>"))
        for b in backends:
            pts = [c for c in measured if c.backend == b]
            ax.errorbar([c.tps.mean for c in pts], [c.jpt.mean for c in pts], xerr=[_err(c.tps) for c in pts],
                        yerr=[_err(c.jpt) for c in pts], fmt=markers[b], capsize=3, label=b, markersize=6)
        right = max(c.tps.mean for c in measured)
        for i, c in enumerate(measured):  # alternate label sides so neighbours do not print over each other
            near_edge = c.tps.mean > 0.6 * right  # labels of the right-most points go left, inside the axes
            ax.annotate(c.label, (c.tps.mean, c.jpt.mean), textcoords="offset points", fontsize=7,
                        xytext=(-6 if near_edge else 6, 6 if i % 2 == 0 else -12),
                        ha="right" if near_edge else "left")
        front = pareto_front([(c.tps.mean, c.jpt.mean) for c in measured])
        ax.plot([measured[i].tps.mean for i in front], [measured[i].jpt.mean for i in front], "--", color="0.3",
                lw=1, marker="o", mfc="none", ms=14, label="Pareto front")
        ax.set_xlabel(THROUGHPUT_LABEL)
        ax.set_ylabel(f"{kind} per output token (J/token)")
        missing = len(configs) - len(measured)
        note = f"; {missing} configuration(s) without energy left out" if missing else ""
        ax.set_title(f"{kind.capitalize()} per token vs throughput (error bars: 95 % CI over cycles){note}",
                     fontsize=9)
        ax.set_xlim(left=0)  # a CI reaching below zero says "few cycles", not a negative figure
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, ax, path)


def _throughput_only(ax, configs: Sequence[Config], adjusted: bool = False) -> None:
    """No energy anywhere (CPU runs): throughput per configuration, and the reason energy is null."""
    ys = range(len(configs))
    ax.barh(list(ys), [c.tps.mean for c in configs], xerr=[_err(c.tps) for c in configs], capsize=3,
            color=["C0" if c.backend == "pytorch" else "C1" for c in configs])
    ax.set_yticks(list(ys), [f"{c.label} ({c.backend})" for c in configs], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(THROUGHPUT_LABEL)
    ax.set_ylabel("configuration")
    reason = next((c.reason for c in configs if c.reason), "no energy figure recorded")
    what = "Idle-adjusted energy not available" if adjusted else "Energy not measured"
    ax.set_title(textwrap.fill(f"{what}, so throughput only (error bars: 95 % CI over cycles). "
                               f"J/token is null: {reason}", 85), fontsize=9)
    ax.set_xlim(left=0)  # a CI reaching below zero says "few cycles", not negative throughput
    ax.grid(axis="x", alpha=0.3)


def power_plot(e: Experiment, series_path: Path, path: Path) -> PlotFile:
    import pyarrow.parquet as pq

    r = e.result
    assert r is not None
    frame = pq.read_table(series_path).to_pandas()
    fig = _figure(9.0, 5.0)
    ax = fig.add_subplot()
    total = r.windows.get("total")
    end = total.duration_s if total else r.total_inference_time_sec
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
    ax.set_title(f"Power over time · {e.experiment_id}\nshaded: {', '.join(shaded)}{missing}", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="lower center")
    ax.grid(alpha=0.3)
    return _save(fig, ax, path)


def plot_results(directory: Path, out_dir: Path | None = None, adjusted: bool = False) -> list[PlotFile]:
    """Write efficiency.png and one power-<experiment>.png per run with a timeseries; returns what was written."""
    experiments = find_experiments(directory)
    ok = [e for e in experiments if e.result is not None]
    if not ok:
        raise ConfigError(f"{directory}: every experiment failed; nothing to plot")
    out_dir = out_dir or directory / "plots"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"-o: '{out_dir}' exists and is not a directory") from None
    written = [efficiency_plot(configurations(ok, adjusted), out_dir / "efficiency.png", adjusted)]
    from llenergymeasure.results.energy_latency_plot import energy_latency_plot
    from llenergymeasure.results.operating_points import points

    dial = energy_latency_plot(points(ok, adjusted), out_dir / "energy_latency.png", adjusted)
    written += [dial] if dial is not None else []
    for e in ok:
        series = timeseries_path(e)
        if series is not None:
            written.append(power_plot(e, series, out_dir / f"power-{e.experiment_id}.png"))
    return written
