"""The study manifest (``manifest.json`` in the study folder): one entry per (point, cycle) run with its status,
folder, error and timings, rewritten atomically after every state change. It is the study's memory: a controller
killed at any instant leaves a manifest that says exactly which runs finished, so ``--resume`` neither repeats nor
loses one."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from lem_runner.contract import engine_identity, measurement_config_hash, reuse_refusal
from lem_runner.contract.atomic import atomic_write_text
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llenergymeasure.config.study import Expansion, StudyConfig
from llenergymeasure.errors import ConfigError
from llenergymeasure.study.order import group_by_engine, schedule

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1

EntryStatus = Literal["pending", "running", "done", "failed"]
#: running: a controller is (or was, if it was killed) working on it; interrupted: Ctrl-C; stopped: the circuit
#: breaker or --fail-fast; complete: every run is done or failed.
#: detached: its jobs were submitted (--detach) and run without a controller; --resume collects them.
StudyStatus = Literal["running", "interrupted", "stopped", "complete", "detached"]


def now() -> datetime:
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ManifestPoint(_Model):
    index: int
    label: str
    backend: str
    experiment_name: str
    measurement_config_hash: str
    engine: str | None = Field(None, description="the point's engine identity (points sharing it can share an engine)")


class Attempt(_Model):
    """An earlier failed attempt of a run that ``--retry-failed`` ran again; its folder is kept."""

    result_path: str | None = None
    error: str | None = None
    reason: str | None = None


class ManifestEntry(_Model):
    run: int = Field(description="position in the schedule, from 1")
    point: int = Field(description="index into points")
    cycle: int
    label: str
    name: str = Field(description="the run folder's prefix: <experiment name>-c<cycle>")
    status: EntryStatus = "pending"
    runner: str | None = None
    result_path: str | None = Field(None, description="the run folder, relative to the study folder")
    error: str | None = None
    reason: str | None = Field(None, description="why it failed: timeout, silence, runner_error, crashed, config, setup; "
                                  "on Slurm also cancelled, out_of_memory, node_fail, preempted, lost")
    attempts: int = 0
    started: datetime | None = None
    finished: datetime | None = None
    duration_s: float | None = Field(None, description="controller's wall time for the run")
    runner_s: float | None = Field(None, description="the runner process's own wall time (launch to exit)")
    earlier: list[Attempt] = Field(default_factory=list)
    engine_session: str | None = Field(None, description="the engine session it ran in (its folder under "
                                       ".sessions/); None: a runner of its own")
    slurm_job_id: str | None = Field(None, description="the run's Slurm job, once submitted")
    slurm_state: str | None = Field(None, description="its last Slurm state seen (PENDING, RUNNING, COMPLETED, "
                                    "FAILED, TIMEOUT, CANCELLED, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, ...)")
    slurm_exit_code: int | None = Field(None, description="the job's exit code (128+N: killed by signal N)")


class Session(_Model):
    """One invocation of the controller on this study (the first run, then each resume). When runs overlap (Slurm
    jobs), ``runner_s`` is the time the controller spent waiting on the scheduler, so that the overhead is its own
    working time: start-up plus submitting, polling and collecting."""

    started: datetime
    ended: datetime | None = None
    runs: int = 0
    wall_s: float = 0.0
    runner_s: float = 0.0
    gap_s: float = 0.0
    outcome: str = "running"

    @property
    def overhead_s(self) -> float:
        return max(0.0, self.wall_s - self.runner_s - self.gap_s)


class Manifest(_Model):
    schema_version: int = SCHEMA_VERSION
    study: str
    config_hash: str
    study_file: str | None = None
    created: datetime
    updated: datetime
    status: StudyStatus = "running"
    stop_reason: str | None = None
    n_cycles: int
    order: str
    seed: int
    engine_reuse: bool = False
    points: list[ManifestPoint]
    skipped: list[str] = Field(default_factory=list)
    entries: list[ManifestEntry]
    sessions: list[Session] = Field(default_factory=list)
    controller_overhead_s_per_experiment: float | None = Field(
        None, description="(wall - runner - gaps) / runs, over every session; the controller's own cost per run"
    )

    def count(self, *statuses: str) -> int:
        return sum(e.status in statuses for e in self.entries)

    @property
    def unfinished(self) -> bool:
        return self.count("pending", "running") > 0

    def update_overhead(self) -> None:
        runs = sum(s.runs for s in self.sessions)
        overhead = sum(s.overhead_s for s in self.sessions)
        self.controller_overhead_s_per_experiment = round(overhead / runs, 4) if runs else None


def study_config_hash(study: StudyConfig, expansion: Expansion) -> str:
    """16 hex of SHA-256 over what the study measures: its name, cycles, order, seed, engine reuse (it changes the
    order and whether engines are fresh) and every point's full config. Execution knobs (gaps, timeout, circuit
    breaker) are left out: changing them does not change a result."""
    payload = {"name": study.name, "n_cycles": study.n_cycles, "order": study.order, "seed": study.seed,
               "points": [{"label": p.label, "config": p.config.model_dump(mode="json")} for p in expansion.points]}
    if study.engine_reuse:
        payload["engine_reuse"] = True
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def new_manifest(study: StudyConfig, expansion: Expansion, study_file: str | None = None) -> Manifest:
    """Every run of the schedule, pending; with ``engine_reuse``, grouped by engine within each cycle."""
    points = [ManifestPoint(index=i, label=p.label, backend=p.config.backend, experiment_name=p.config.experiment_name,
                            measurement_config_hash=measurement_config_hash(p.config),
                            engine=engine_identity(p.config))
              for i, p in enumerate(expansion.points)]
    runs = schedule(expansion.points, study.n_cycles, study.order, study.seed)
    if study.engine_reuse:  # a point that must have an engine of its own (serving, Slurm, ...) is not moved
        keys = [p.engine if reuse_refusal(c.config) is None else f"own:{p.index}"
                for p, c in zip(points, expansion.points)]
        runs = group_by_engine(runs, keys)
    entries = [ManifestEntry(run=n, point=i, cycle=c, label=points[i].label,
                             name=f"{points[i].experiment_name}-c{c}")
               for n, (i, c) in enumerate(runs, 1)]
    stamp = now()
    return Manifest(study=study.name, config_hash=study_config_hash(study, expansion), study_file=study_file,
                    created=stamp, updated=stamp, n_cycles=study.n_cycles, order=study.order, seed=study.seed,
                    engine_reuse=study.engine_reuse,
                    points=points, skipped=list(expansion.skipped), entries=entries)


def save_manifest(manifest: Manifest, study_dir: Path) -> None:
    manifest.updated = now()
    atomic_write_text(study_dir / MANIFEST_FILE, manifest.model_dump_json(indent=2))


def load_manifest(study_dir: Path) -> Manifest:
    """The manifest of ``study_dir``; ConfigError naming the file when it is missing or unreadable."""
    path = study_dir / MANIFEST_FILE
    if not path.is_file():
        raise ConfigError(f"--resume: {study_dir} has no {MANIFEST_FILE}, so it is not a study folder")
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except (ValidationError, ValueError) as exc:
        raise ConfigError(f"{path}: not a valid study manifest ({str(exc).splitlines()[0]})") from None
