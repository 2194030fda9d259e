"""Run a study's experiments one after another, each with its own launcher (a backend not installed here runs in
its image), so backends whose stacks conflict are compared on one machine in one command. A failed experiment is
recorded and the rest still run; study_summary.json is rewritten atomically after every experiment."""

from __future__ import annotations

import json
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
from llenergymeasure.study.config import Expansion, StudyConfig, StudyPoint

SUMMARY_FILE = "study_summary.json"


@dataclass
class PointOutcome:
    point: StudyPoint
    runner: str
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

    @property
    def failed(self) -> int:
        return sum(not o.ok for o in self.outcomes)


def _row(o: PointOutcome) -> dict:
    r = o.result
    row = {"label": o.point.label, "backend": o.point.config.backend, "runner": o.runner,
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
    summary = {"study": study.name, "updated": datetime.now(UTC).isoformat(timespec="seconds"),
               "planned": total, "finished": len(outcome.outcomes), "failed": outcome.failed,
               "skipped": outcome.skipped, "experiments": [_row(o) for o in outcome.outcomes]}
    atomic_write_text(outcome.study_dir / SUMMARY_FILE, json.dumps(summary, indent=2))


def execute_study(
    study: StudyConfig,
    expansion: Expansion,
    output: str | Path = "results",
    isolated: bool = False,
    on_point=None,
    on_event=None,
    timeouts: Timeouts = Timeouts(),
) -> StudyOutcome:
    """Run every point; ``on_point(i, n, point, runner)`` is called before each starts."""
    study_dir = FileResultsRepository(output).new_experiment_dir(study.name)
    outcome = StudyOutcome(study_dir, skipped=list(expansion.skipped))
    total = len(expansion.points)
    write_summary(outcome, study, total)
    for i, point in enumerate(expansion.points, start=1):
        launcher = select_launcher(point.config, isolated=isolated)
        if on_point:
            on_point(i, total, point, launcher.name)
        record = PointOutcome(point, launcher.name)
        try:
            record.result, record.exp_dir = execute_experiment(
                point.config, output=study_dir, launcher=launcher, on_event=on_event, timeouts=timeouts
            )
        except (RunFailed, SetupError, ConfigError) as exc:
            record.error = str(exc)
        outcome.outcomes.append(record)
        write_summary(outcome, study, total)
    return outcome
