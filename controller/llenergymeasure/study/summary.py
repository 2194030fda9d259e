"""study_summary.json (every finished run's figures, per-point aggregates, warnings, the controller's overhead) and
study_summary.csv (one row per point), both rebuilt from the manifest and rewritten atomically after every run, so a
study cut off at any point still has an up-to-date summary of what it finished."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from lem_runner.contract import ExperimentResult
from lem_runner.contract.atomic import atomic_write_text

from llenergymeasure.config.study import StudyConfig
from llenergymeasure.results.metrics import METRICS
from llenergymeasure.study.aggregate import PointAggregate, aggregate_point, cv_warnings, to_csv
from llenergymeasure.study.manifest import MANIFEST_FILE, Manifest, ManifestEntry

SUMMARY_FILE = "study_summary.json"
SUMMARY_CSV = "study_summary.csv"
#: each finished run's figures in study_summary.json, named as the catalogue (results/metrics.py) names them
RUN_FIGURES = ("output_tokens_per_second", "output_tokens", "run_input_tokens", "run_output_tokens", "ttft_p50_ms",
               "itl_p50_ms", "energy_j", "energy_per_token_j", "energy_per_token_adjusted_j", "headline_flops",
               "model_load_s")


def aggregates(manifest: Manifest, results: Mapping[int, ExperimentResult]) -> list[PointAggregate]:
    """One per point with at least one finished run (done or failed), in the study's point order. ``results``
    maps run numbers to the results of done runs."""
    out = []
    for point in manifest.points:
        finished = [e for e in manifest.entries if e.point == point.index and e.status in ("done", "failed")]
        if finished:
            ok = [results[e.run] for e in finished if e.status == "done" and e.run in results]
            out.append(aggregate_point(point.label, point.backend, ok, sum(e.status == "failed" for e in finished)))
    return out


def run_row(entry: ManifestEntry, backend: str, result: ExperimentResult | None) -> dict:
    row = {"run": entry.run, "label": entry.label, "cycle": entry.cycle, "backend": backend, "runner": entry.runner,
           "status": entry.status, "error": entry.error, "reason": entry.reason, "experiment_id": entry.result_path,
           "duration_s": entry.duration_s, "runner_s": entry.runner_s}
    if result is not None:
        row.update({k: METRICS[k].read(result) for k in RUN_FIGURES})
        row["energy_unavailable_reason"] = result.energy.unavailable_reason
    return row


def write_summary(study_dir: Path, study: StudyConfig, manifest: Manifest,
                  results: Mapping[int, ExperimentResult]) -> list[PointAggregate]:
    """Rewrite both summary files; returns the aggregates it wrote."""
    aggs = aggregates(manifest, results)
    backend = {p.index: p.backend for p in manifest.points}
    finished = [e for e in manifest.entries if e.status in ("done", "failed")]
    summary = {
        "study": study.name, "updated": manifest.updated.isoformat(timespec="seconds"), "status": manifest.status,
        "stop_reason": manifest.stop_reason, "manifest": MANIFEST_FILE, "config_hash": manifest.config_hash,
        "n_cycles": study.n_cycles, "order": study.order, "seed": study.seed, "gap_seconds": study.gap_seconds,
        "planned": len(manifest.entries), "finished": len(finished), "failed": manifest.count("failed"),
        "pending": manifest.count("pending", "running"),
        "controller_overhead_s_per_experiment": manifest.controller_overhead_s_per_experiment,
        "skipped": manifest.skipped,
        "experiments": [run_row(e, backend[e.point], results.get(e.run)) for e in finished],
        "aggregates": [a.as_dict() for a in aggs], "warnings": cv_warnings(aggs),
    }
    atomic_write_text(study_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
    atomic_write_text(study_dir / SUMMARY_CSV, to_csv(aggs))
    return aggs
