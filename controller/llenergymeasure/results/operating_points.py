"""Operating points of a results folder (or a study): per configuration the energy per output token, the latency
figures, and the GPU setting it ran at — the data behind the energy–latency plot and `lem results best`, which picks
the lowest-energy configuration whose latency meets the targets.

A configuration is a study point over its cycles (means over cycles of each run's figure) or a single run. A target
is met when the mean over cycles is at or under it; the CI is reported beside it so a close call is visible."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lem_runner.contract import ExperimentResult

from llenergymeasure.errors import ConfigError, LemError
from llenergymeasure.results.discover import Experiment, find_experiments
from llenergymeasure.results.metrics import METRICS
from llenergymeasure.results.points import short_model
from llenergymeasure.results.statistics import MetricStats, describe

#: the latency targets ``lem results best`` takes: the catalogue's figure (results/metrics.py) and its short name.
#: "Time per token" is TPOT (per request, (last - first token) / (tokens - 1)); ITL is the gap between steps, which a
#: step emitting several tokens (speculative decoding) makes longer than the time per token
LATENCY_FIGURES = {key: (METRICS[key].read, short) for key, short in (
    ("ttft_p50_ms", "TTFT p50"), ("ttft_p99_ms", "TTFT p99"), ("tpot_p50_ms", "TPOT p50"),
    ("tpot_p99_ms", "TPOT p99"), ("itl_p50_ms", "ITL p50"), ("itl_p99_ms", "ITL p99"))}


#: the quality bounds ``lem results best`` takes: the catalogue's figure, its short name and the side it bounds
#: ('max': at most the bound, 'min': at least)
QUALITY_FIGURES = {key: (METRICS[key].read, short, side) for key, short, side in (
    ("fidelity_kl_mean_nats", "KL", "max"), ("task_accuracy", "task acc", "min"))}


def _energy_per_token(adjusted: bool):
    return METRICS["energy_per_token_adjusted_j" if adjusted else "energy_per_token_j"]


class NoneMeetsTargets(LemError):
    """No configuration with measured energy meets the latency targets."""

    exit_code = 1


def setting_label(r: ExperimentResult) -> str:
    """The GPU operating point in words ('300 W, SM 1200 MHz'), or 'default clocks' when the run set none."""
    g = r.config.gpu
    parts = []
    if g.power_limit_w is not None:
        parts.append(f"{g.power_limit_w:g} W")
    for name, lock in (("SM", g.locked_sm_clock_mhz), ("mem", g.locked_memory_clock_mhz)):
        lo_hi = g.clock_range(lock)
        if lo_hi:
            parts.append(f"{name} {lo_hi[0]}" + (f"–{lo_hi[1]}" if lo_hi[1] != lo_hi[0] else "") + " MHz")
    return ", ".join(parts) or "default clocks"


@dataclass(frozen=True)
class Point:
    label: str
    backend: str
    setting: str
    jpt: MetricStats
    tps: MetricStats
    latency: dict[str, MetricStats] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    quality: dict[str, MetricStats] = field(default_factory=dict)  # QUALITY_FIGURES, means over cycles


def points(experiments: Sequence[Experiment], adjusted: bool = False) -> list[Point]:
    groups: dict[tuple, list[ExperimentResult]] = defaultdict(list)
    for e in experiments:
        if e.result is not None:
            groups[(e.study, e.label) if e.study and e.label else (None, str(e.path))].append(e.result)
    out = []
    for (study, key), results in groups.items():
        first = results[0]
        label = f"{study}: {key}" if study else f"{short_model(first.config.model)} {first.experiment_id}"
        energy = [_energy_per_token(adjusted).read(r) for r in results]
        latency = {name: describe([v for r in results if (v := read(r)) is not None])
                   for name, (read, _) in LATENCY_FIGURES.items()}
        flags = tuple(sorted({f for r in results for f in r.quality_flags if f == "clock_drift"}))
        quality = {name: describe([v for r in results if (v := read(r)) is not None])
                   for name, (read, _, _) in QUALITY_FIGURES.items()}
        out.append(Point(label, first.config.backend, setting_label(first),
                         describe([v for v in energy if v is not None]),
                         describe([METRICS["output_tokens_per_second"].read(r) for r in results]), latency, flags,
                         quality))
    return out


@dataclass(frozen=True)
class Best:
    chosen: Point
    met: list[Point]
    missed: list[tuple[Point, str]]
    unmeasured: list[Point]


def best(pts: Sequence[Point], targets: dict[str, float], bounds: dict[str, float] | None = None) -> Best:
    """The lowest mean J/token among the points whose mean latency meets every target and whose mean quality
    figures keep within every bound (QUALITY_FIGURES: KL at most, accuracy at least)."""
    bounds = bounds or {}
    for name in targets:
        if name not in LATENCY_FIGURES:
            raise ConfigError(f"unknown latency target '{name}' (use {', '.join(LATENCY_FIGURES)})")
    for name in bounds:
        if name not in QUALITY_FIGURES:
            raise ConfigError(f"unknown quality bound '{name}' (use {', '.join(QUALITY_FIGURES)})")
    met, missed, unmeasured = [], [], []
    for p in pts:
        if p.jpt.mean is None:
            unmeasured.append(p)
            continue
        why = []
        for name, limit in targets.items():
            m = p.latency[name].mean
            if m is None:
                why.append(f"no {LATENCY_FIGURES[name][1]}")
            elif m > limit:
                why.append(f"{LATENCY_FIGURES[name][1]} {m:.1f} ms > {limit:g}")
        for name, limit in bounds.items():
            _, short, side = QUALITY_FIGURES[name]
            m = p.quality[name].mean
            if m is None:
                why.append(f"no {short}")
            elif (m > limit) if side == "max" else (m < limit):
                why.append(f"{short} {m:.4g} {'>' if side == 'max' else '<'} {limit:g}")
        (missed.append((p, "; ".join(why))) if why else met.append(p))
    if not met:
        detail = "; ".join(f"{p.label}: {why}" for p, why in missed) or "no configuration has measured energy"
        raise NoneMeetsTargets(f"no configuration meets the targets ({detail})")
    met.sort(key=lambda p: p.jpt.mean)
    return Best(met[0], met, missed, unmeasured)


def best_in(directory: Path, targets: dict[str, float], adjusted: bool = False,
            bounds: dict[str, float] | None = None) -> Best:
    if not directory.is_dir():
        raise ConfigError(f"{directory}: not a results or study folder")
    return best(points(find_experiments(directory), adjusted), targets, bounds)


def describe_best(b: Best, targets: dict[str, float], adjusted: bool = False,
                  bounds: dict[str, float] | None = None) -> list[str]:
    """What `lem results best` prints: the choice, then every candidate by energy."""
    bounds = bounds or {}
    kind = "idle-adjusted J/token" if adjusted else "J/token"
    want = ", ".join([f"{LATENCY_FIGURES[n][1]} <= {v:g} ms" for n, v in targets.items()]
                     + [f"{QUALITY_FIGURES[n][1]} {'<=' if QUALITY_FIGURES[n][2] == 'max' else '>='} {v:g}"
                        for n, v in bounds.items()]) or "no latency target"

    def line(p: Point) -> str:
        ci = f" ± {p.jpt.ci95:.3g}" if p.jpt.ci95 is not None else ""
        lat = ", ".join([f"{LATENCY_FIGURES[n][1]} {p.latency[n].mean:.1f} ms" for n in targets
                         if p.latency[n].mean is not None]
                        + [f"{QUALITY_FIGURES[n][1]} {p.quality[n].mean:.4g}" for n in bounds
                           if p.quality[n].mean is not None])
        drift = " [clock_drift]" if p.flags else ""
        return (f"{p.label} ({p.backend}; {p.setting}): {p.jpt.mean:.4g}{ci} {kind}, {p.tps.mean:.1f} tok/s"
                f"{', ' + lat if lat else ''}{drift}")

    c = b.chosen
    out = [f"best for {want}: {line(c)}", f"{len(b.met)} of {len(b.met) + len(b.missed) + len(b.unmeasured)} "
           "configuration(s) meet the targets (mean over cycles at or under each):"]
    out += [f"  {line(p)}" for p in b.met]
    out += [f"  missed: {p.label} ({p.setting}): {why}" for p, why in b.missed]
    out += [f"  no energy: {p.label}" for p in b.unmeasured]
    return out
