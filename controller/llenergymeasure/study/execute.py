"""Run a study's runs one after another, each with its own launcher (a backend not installed here runs in its image),
so backends whose stacks conflict are compared on one machine in one command.

Every state change is written to the manifest first (atomically), so the study survives its controller: a failed
run is recorded and the rest still run; a run cut off by Ctrl-C goes back to pending and the study stops resumable
(exit 130); ``max_consecutive_failures`` failures in a row (1 with ``--fail-fast``) stop it resumable too. The
controller's own cost per run (wall time less runner time and gaps) is measured and recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from lem_runner.contract import ExperimentResult, ProgressEvent

from llenergymeasure.config.study import Expansion, StudyConfig, StudyPoint
from llenergymeasure.errors import ConfigError, Interrupted, RunFailed, SetupError
from llenergymeasure.experiment import execute_experiment
from llenergymeasure.launchers import Launcher, LaunchOutcome, LaunchSpec, Timeouts
from llenergymeasure.launchers.select import select_launcher
from llenergymeasure.launchers.session import SessionLauncher
from llenergymeasure.options import RunOptions
from llenergymeasure.results import FileResultsRepository
from llenergymeasure.results.repository import CorruptResult
from llenergymeasure.study.aggregate import PointAggregate
from llenergymeasure.study.engines import EngineSessions
from llenergymeasure.study.manifest import (
    Manifest,
    ManifestEntry,
    Session,
    load_manifest,
    new_manifest,
    now,
    save_manifest,
)
from llenergymeasure.study.reference import fidelity_request, reference_first
from llenergymeasure.study.resume import StudyLock, discard_partial, find_unfinished, recover, reset_entry
from llenergymeasure.study.summary import aggregates, write_summary

#: the options a study runs with are lem's run options (llenergymeasure.options): one declaration. The old name stays
#: for callers outside the package (bench/) until they say RunOptions.
StudyOptions = RunOptions


class StudyObserver:
    """Hooks the progress view implements; each does nothing here."""

    def started(self, outcome: StudyOutcome, notes: list[str]) -> None: ...

    def run_started(self, entry: ManifestEntry, outcome: StudyOutcome, runner: str) -> None: ...

    def event(self, event: ProgressEvent) -> None: ...

    def run_finished(self, entry: ManifestEntry, outcome: StudyOutcome) -> None: ...

    def waiting(self, seconds: float) -> None: ...


@dataclass
class StudyOutcome:
    study_dir: Path
    manifest: Manifest
    points: list[StudyPoint]
    results: dict[int, ExperimentResult] = field(default_factory=dict)  # run number -> result of a done run
    reference: int | None = None  # the point quality.reference names (Expansion.reference)

    @property
    def failed(self) -> int:
        return self.manifest.count("failed")

    @property
    def status(self) -> str:
        return self.manifest.status

    def aggregates(self) -> list[PointAggregate]:
        return aggregates(self.manifest, self.results)


class StudyInterrupted(Interrupted):
    """Ctrl-C stopped the study; the manifest says what finished and ``lem run --resume`` does the rest."""

    def __init__(self, outcome: StudyOutcome) -> None:
        super().__init__(f"interrupted: {outcome.manifest.count('done', 'failed')} of {len(outcome.manifest.entries)}"
                         f" runs finished; resume with --resume {outcome.study_dir}")
        self.outcome = outcome


class _TimedLauncher(Launcher):
    """A launcher that adds up how long its runner ran (process start to exit): the runner's own time."""

    def __init__(self, inner: Launcher) -> None:
        self.inner = inner
        self.name = inner.name
        self.concurrent, self.sessions = inner.concurrent, inner.sessions
        self.allocates_devices = inner.allocates_devices
        self.elapsed = 0.0

    def launch(self, spec: LaunchSpec, on_event) -> LaunchOutcome:
        start = time.monotonic()
        try:
            return self.inner.launch(spec, on_event)
        finally:
            self.elapsed += time.monotonic() - start


class _RecordingRepository(FileResultsRepository):
    """Records a run's folder in the manifest as soon as it exists, so a resume knows what to discard."""

    def __init__(self, root: Path, on_new: Callable[[Path], None]) -> None:
        super().__init__(root)
        self._on_new = on_new

    def new_experiment_dir(self, name: str) -> Path:
        path = super().new_experiment_dir(name)
        self._on_new(path)
        return path


def _open(study: StudyConfig, expansion: Expansion, output: Path, options: RunOptions, study_file: str | None,
          lock_stack: list[StudyLock]) -> tuple[Path, Manifest, list[str]]:
    """A new study folder with every run pending, or the resumed one checked, locked and recovered."""
    if options.resume is None or options.resume is False:
        study_dir = FileResultsRepository(output).new_experiment_dir(study.name)
        lock_stack.append(StudyLock(study_dir).__enter__())
        return study_dir, new_manifest(study, expansion, study_file), []
    study_dir = find_unfinished(output, study.name) if options.resume is True else Path(options.resume)
    if not study_dir.is_dir():
        raise ConfigError(f"--resume: folder '{study_dir}' does not exist")
    lock_stack.append(StudyLock(study_dir).__enter__())
    manifest = load_manifest(study_dir)
    fresh = new_manifest(study, expansion)
    if manifest.config_hash != fresh.config_hash:
        raise ConfigError(
            f"--resume: {study_dir} was run with a different study config (hash {manifest.config_hash}, this one "
            f"{fresh.config_hash}); resume with the same file and flags, or start a new study without --resume"
        )
    return study_dir, manifest, recover(study_dir, manifest, retry_failed=options.retry_failed)


def _load_done(study_dir: Path, manifest: Manifest, notes: list[str]) -> dict[int, ExperimentResult]:
    """Results of the runs the manifest says are done. One whose result.json is gone or corrupt runs again."""
    repo = FileResultsRepository(study_dir)
    results = {}
    for entry in manifest.entries:
        if entry.status != "done":
            continue
        try:
            result = repo.load_result(study_dir / entry.result_path) if entry.result_path else None
        except CorruptResult:
            result = None
        if result is None:
            notes.append(f"run {entry.run} ({entry.label}, cycle {entry.cycle}): its result is missing or corrupt, "
                         "it runs again")
            discard_partial(study_dir, manifest, entry)
            reset_entry(entry)
        else:
            results[entry.run] = result
    return results


def execute_study(
    study: StudyConfig,
    expansion: Expansion,
    output: str | Path = "results",
    options: RunOptions = RunOptions(),
    observer: StudyObserver | None = None,
    sleep: Callable[[float], None] = time.sleep,
    launcher_for: Callable[[StudyPoint, bool], Launcher] | None = None,
    gpu_control=None,
    study_file: str | None = None,
) -> StudyOutcome:
    """Run every pending run of the study in its scheduled order (all of them, for a new study). ``options``: the
    run options it uses (isolated, no_gaps, fail_fast, retry_failed, resume, timeouts, detach); ``study_file``: the
    file the study came from, for the manifest. Raises
    StudyInterrupted on Ctrl-C; returns with ``status`` complete, or stopped by the circuit breaker. Each run sets
    its point's ``gpu:`` operating point and restores it when it ends (``gpu_control`` opens the GPUs; NVML by
    default)."""
    started = time.monotonic()
    observer = observer or StudyObserver()
    launcher_for = launcher_for or (lambda point, isolated: select_launcher(point.config, isolated=isolated))
    locks: list[StudyLock] = []
    try:
        study_dir, manifest, notes = _open(study, expansion, Path(output), options, study_file, locks)
        results = _load_done(study_dir, manifest, notes)
        outcome = StudyOutcome(study_dir, manifest, list(expansion.points), results, expansion.reference)
        session = Session(started=now())
        manifest.sessions.append(session)
        manifest.status = "running"
        save_manifest(manifest, study_dir)
        write_summary(study_dir, study, manifest, results)
        observer.started(outcome, notes)
        try:
            _run_pending(study, outcome, session, options, observer, sleep, launcher_for, gpu_control)
        except (Interrupted, KeyboardInterrupt):
            manifest.status = "interrupted"
            raise StudyInterrupted(outcome) from None
        finally:
            session.wall_s = time.monotonic() - started
            session.ended = now()
            session.outcome = manifest.status
            manifest.update_overhead()
            save_manifest(manifest, study_dir)
            write_summary(study_dir, study, manifest, results)
        return outcome
    finally:
        for lock in locks:
            lock.__exit__(None, None, None)


def _run_pending(study: StudyConfig, outcome: StudyOutcome, session: Session, options: RunOptions,
                 observer: StudyObserver, sleep, launcher_for, gpu_control=None) -> None:
    manifest = outcome.manifest
    gap = 0.0 if options.no_gaps else study.gap_seconds
    limit = 1 if options.fail_fast else study.max_consecutive_failures
    timeouts = options.timeouts
    if timeouts.wall_s is None and study.experiment_timeout_s is not None:
        timeouts = replace(timeouts, wall_s=study.experiment_timeout_s)
    concurrent = _concurrent_launcher(outcome, options, launcher_for)
    if concurrent is not None:  # a scheduler runs them side by side: submit, poll all at once, collect
        from llenergymeasure.study.concurrent import run_concurrent

        return run_concurrent(study, outcome, session, options, observer, concurrent, timeouts)
    if options.detach:
        raise ConfigError("--detach: only for a study whose runs go to Slurm (runner: slurm or --slurm)")
    _drop_left_jobs(outcome)
    consecutive = 0
    engines = EngineSessions(study, outcome, options.isolated, launcher_for, session)
    try:
        pending = reference_first(outcome, [e for e in manifest.entries if e.status == "pending"])
        for k, entry in enumerate(pending):
            if session.runs and gap > 0:
                observer.waiting(gap)
                t = time.monotonic()
                sleep(gap)
                session.gap_s += time.monotonic() - t
            engine, made = engines.for_run(entry, pending[k + 1] if k + 1 < len(pending) else None)
            entry.engine_session = engine.session_dir.name if engine is not None else None
            run_launcher = (SessionLauncher(engine) if engine is not None else made)
            _run_one(study, outcome, entry, session, options.isolated, timeouts, observer,
                     launcher_for if run_launcher is None else (lambda _p, _i, la=run_launcher: la), gpu_control)
            consecutive = consecutive + 1 if entry.status == "failed" else 0
            if limit and consecutive >= limit:
                manifest.status = "stopped"
                manifest.stop_reason = ("--fail-fast: a run failed" if options.fail_fast else
                                        f"circuit breaker: {consecutive} runs failed in a row "
                                        f"(max_consecutive_failures: {limit})")
                return
    finally:
        engines.close()
    manifest.status = "complete" if not manifest.unfinished else "stopped"


def _concurrent_launcher(outcome: StudyOutcome, options: RunOptions, launcher_for) -> Launcher | None:
    """The one launcher every unfinished run shares when it can run several at once (``submit``/``poll``), else None."""
    todo = [e for e in outcome.manifest.entries if e.status in ("pending", "running")]
    if not todo:
        return None
    launchers = {outcome.points[e.point].config.runner for e in todo}
    if launchers != {"slurm"}:
        return None
    launcher = launcher_for(outcome.points[todo[0].point], options.isolated)
    return launcher if launcher.concurrent else None


def _drop_left_jobs(outcome: StudyOutcome) -> None:
    """Slurm runs a killed controller left running, in a study that is not all on Slurm (so is not re-attached):
    cancel their jobs (best effort) and run them again."""
    for entry in outcome.manifest.entries:
        if entry.status == "running":
            if entry.slurm_job_id:
                from llenergymeasure.launchers.slurm import SlurmCommands

                try:
                    SlurmCommands().cancel([entry.slurm_job_id])
                except SetupError:
                    pass
            discard_partial(outcome.study_dir, outcome.manifest, entry)
            reset_entry(entry)


def _run_one(study: StudyConfig, outcome: StudyOutcome, entry: ManifestEntry, session: Session, isolated: bool,
             timeouts: Timeouts, observer: StudyObserver, launcher_for, gpu_control=None) -> None:
    manifest, study_dir = outcome.manifest, outcome.study_dir
    point = outcome.points[entry.point]
    launcher = _TimedLauncher(launcher_for(point, isolated))
    entry.status, entry.runner, entry.started, entry.attempts = "running", launcher.name, now(), entry.attempts + 1
    save_manifest(manifest, study_dir)
    start = time.monotonic()

    def record_dir(path: Path) -> None:
        entry.result_path = path.name
        save_manifest(manifest, study_dir)

    try:
        try:
            observer.run_started(entry, outcome, launcher.name)
            repo = _RecordingRepository(study_dir, record_dir)
            config = point.config.model_copy(update={"name": entry.name})
            fidelity, reference_file = fidelity_request(outcome, entry)
            result, _ = execute_experiment(config, output=study_dir, launcher=launcher, on_event=observer.event,
                                           timeouts=timeouts, repository=repo, gpu_control=gpu_control,
                                           fidelity=fidelity, reference_file=reference_file)
        finally:
            session.runs += 1
            session.runner_s += launcher.elapsed
    except (Interrupted, KeyboardInterrupt):
        discard_partial(study_dir, manifest, entry)  # an interrupted run's error.json is not a result
        reset_entry(entry)
        save_manifest(manifest, study_dir)
        raise
    except (RunFailed, SetupError, ConfigError) as exc:
        entry.status, entry.error = "failed", str(exc)
        entry.reason = exc.reason if isinstance(exc, RunFailed) else "setup" if isinstance(exc, SetupError) else "config"
    else:
        entry.status = "done"
        outcome.results[entry.run] = result
    entry.finished = now()
    entry.duration_s = round(time.monotonic() - start, 4)
    entry.runner_s = round(launcher.elapsed, 4)
    save_manifest(manifest, study_dir)
    write_summary(study_dir, study, manifest, outcome.results)
    observer.run_finished(entry, outcome)
