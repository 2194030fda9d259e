"""Run a study's experiments one after another, each with its own launcher (a backend not installed here runs in
its image), so backends whose stacks conflict are compared on one machine in one command. Each point runs
``n_cycles`` times in the study's order, ``gap_seconds`` apart. A failed run is recorded and the rest still run;
study_summary.json (per-run rows, per-point aggregates, warnings) and study_summary.csv (one row per point) are
rewritten atomically after every run."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lem_runner.atomic import atomic_write_text
from lem_runner.contract import ExperimentResult

from llenergymeasure.errors import ConfigError, RunFailed, SetupError
from llenergymeasure.experiment import execute_experiment
from llenergymeasure.launchers import Timeouts
from llenergymeasure.launchers.select import select_launcher
from llenergymeasure.results import FileResultsRepository
from llenergymeasure.study.aggregate import PointAggregate, aggregate_point, cv_warnings, to_csv
from llenergymeasure.study.config import Expansion, StudyConfig, StudyPoint, schedule

SUMMARY_FILE = "study_summary.json"
SUMMARY_CSV = "study_summary.csv"


@dataclass
class PointOutcome:
    point: StudyPoint
    runner: str
    cycle: int = 1
    result: ExperimentResult | None = None
    exp_dir: Path | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None


@dataclass
class StudyOutcome:
    study_dir: Path
    outcomes: list[PointOutcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    points: list[StudyPoint] = field(default_factory=list)
    n_cycles: int = 1

    @property
    def failed(self) -> int:
        return sum(not o.ok for o in self.outcomes)

    def aggregates(self) -> list[PointAggregate]:
        """One per point that has run at least once, in the study's point order."""
        out = []
        for point in self.points:
            runs = [o for o in self.outcomes if o.point is point]
            if runs:
                out.append(aggregate_point(point.label, point.config.backend, [o.result for o in runs if o.result],
                                           sum(not o.ok for o in runs)))
        return out


def _row(o: PointOutcome) -> dict:
    r = o.result
    row = {"label": o.point.label, "cycle": o.cycle, "backend": o.point.config.backend, "runner": o.runner,
           "status": "done" if o.ok else "failed", "error": o.error,
           "experiment_id": o.exp_dir.name if o.exp_dir else None}
    if r is not None:
        row.update(
            tokens_per_second=r.avg_tokens_per_second, output_tokens=r.output_tokens, input_tokens=r.input_tokens,
            ttft_p50_ms=r.ttft.p50_ms if r.ttft else None, itl_p50_ms=r.itl.p50_ms if r.itl else None,
            energy_j=r.total_energy_j, energy_per_token_j=r.avg_energy_per_token_j,
            energy_unavailable_reason=r.energy.unavailable_reason, total_flops=r.total_flops,
            model_load_sec=r.model_load_sec,
        )
    return row


def write_summary(outcome: StudyOutcome, study: StudyConfig, total: int) -> None:
    aggregates = outcome.aggregates()
    summary = {"study": study.name, "updated": datetime.now(UTC).isoformat(timespec="seconds"),
               "n_cycles": study.n_cycles, "order": study.order, "seed": study.seed, "gap_seconds": study.gap_seconds,
               "planned": total, "finished": len(outcome.outcomes), "failed": outcome.failed,
               "skipped": outcome.skipped, "experiments": [_row(o) for o in outcome.outcomes],
               "aggregates": [a.as_dict() for a in aggregates], "warnings": cv_warnings(aggregates)}
    atomic_write_text(outcome.study_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
    atomic_write_text(outcome.study_dir / SUMMARY_CSV, to_csv(aggregates))


def execute_study(
    study: StudyConfig,
    expansion: Expansion,
    output: str | Path = "results",
    isolated: bool = False,
    on_point=None,
    on_event=None,
    timeouts: Timeouts = Timeouts(),
    sleep=time.sleep,
) -> StudyOutcome:
    """Run every point ``n_cycles`` times in the study's order; ``on_point(i, n, point, runner, cycle)`` is called
    before each run starts, and ``sleep(gap_seconds)`` between runs (not after the last; never when 0)."""
    study_dir = FileResultsRepository(output).new_experiment_dir(study.name)
    points = expansion.points
    outcome = StudyOutcome(study_dir, skipped=list(expansion.skipped), points=list(points), n_cycles=study.n_cycles)
    runs = schedule(points, study.n_cycles, study.order, study.seed)
    total = len(runs)
    write_summary(outcome, study, total)
    for i, (index, cycle) in enumerate(runs, start=1):
        if i > 1 and study.gap_seconds > 0:
            sleep(study.gap_seconds)
        point = points[index]
        launcher = select_launcher(point.config, isolated=isolated)
        if on_point:
            on_point(i, total, point, launcher.name, cycle)
        record = PointOutcome(point, launcher.name, cycle)
        config = point.config.model_copy(update={"name": f"{point.config.experiment_name}-c{cycle}"})
        try:
            record.result, record.exp_dir = execute_experiment(
                config, output=study_dir, launcher=launcher, on_event=on_event, timeouts=timeouts
            )
        except (RunFailed, SetupError, ConfigError) as exc:
            record.error = str(exc)
        outcome.outcomes.append(record)
        write_summary(outcome, study, total)
    return outcome
