"""A study point's figures over its cycles: each catalogue metric described by results/statistics.py (n, mean, sample
standard deviation, 95 % confidence interval with the exact t quantile, CV). Null-aware: a cycle whose metric is null (energy not measured, no latency) is left out of that metric; a metric null
in every cycle stays null (never 0). With n = 1 there is no spread: std, ci95 and cv are null.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from lem_runner.contract import ExperimentResult

from llenergymeasure.results.metrics import METRICS, RESCALED, STUDY_METRICS
from llenergymeasure.results.points import label_params, sweep_columns
from llenergymeasure.results.statistics import MetricStats, describe

CV_WARN = 0.10
STATS = ("mean", "std", "ci95", "cv", "n")


@dataclass(frozen=True)
class PointAggregate:
    label: str
    backend: str
    n_ok: int
    n_failed: int
    metrics: dict[str, MetricStats] = field(default_factory=dict)
    energy_unavailable_reason: str | None = None

    def as_dict(self) -> dict:
        return {"label": self.label, "backend": self.backend, "n_ok": self.n_ok, "n_failed": self.n_failed,
                **{name: stats.as_dict() for name, stats in self.metrics.items()},
                "energy_unavailable_reason": self.energy_unavailable_reason}


def aggregate_point(label: str, backend: str, results: Sequence[ExperimentResult], n_failed: int = 0) -> PointAggregate:
    """Statistics of one point over its successful cycles (``results``)."""
    metrics = {}
    for name in STUDY_METRICS:  # figures named and read as the catalogue (results/metrics.py) says
        metrics[name] = describe([v for v in (METRICS[name].read(r) for r in results) if v is not None])
    reasons = [r.energy.unavailable_reason for r in results if r.total_energy_j is None and r.energy.unavailable_reason]
    reason = reasons[0] if reasons and metrics["energy_j"].n == 0 else None
    return PointAggregate(label, backend, len(results), n_failed, metrics, reason)


def cv_warnings(aggregates: Sequence[PointAggregate], threshold: float = CV_WARN) -> list[str]:
    """One line per metric whose CV across a point's cycles exceeds ``threshold``."""
    out = []
    for agg in aggregates:
        for name, stats in agg.metrics.items():
            if name in RESCALED:
                continue
            if stats.cv is not None and stats.cv > threshold:
                out.append(f"{name} varies {stats.cv * 100:.0f} % across cycles of {agg.label}: "
                           "more cycles or longer windows")
    return out


def csv_columns(params: Sequence[str] = ()) -> list[str]:
    """``label``, then one ``sweep.<parameter>`` column per parameter the points set, then the statistics."""
    return ["label", *params, "backend", "n_ok", "n_failed",
            *(f"{name}_{stat}" for name in STUDY_METRICS for stat in STATS), "energy_unavailable_reason"]


def to_csv(aggregates: Sequence[PointAggregate]) -> str:
    """One row per point, with a column per swept parameter (from the point labels); a null figure is an empty
    cell, and so is a parameter a point does not set."""
    params = sweep_columns([a.label for a in aggregates])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=csv_columns(params), lineterminator="\n")
    writer.writeheader()
    for agg in aggregates:
        row: dict[str, object] = {"label": agg.label, "backend": agg.backend, "n_ok": agg.n_ok,
                                  "n_failed": agg.n_failed, "energy_unavailable_reason": agg.energy_unavailable_reason}
        row.update({f"sweep.{k}": v for k, v in label_params(agg.label).items()})
        for name, stats in agg.metrics.items():
            for stat, value in stats.as_dict().items():
                row[f"{name}_{stat}"] = value
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()
