"""Run a study's runs as concurrent scheduler jobs (the Slurm launcher): up to ``slurm.max_jobs_in_flight`` submitted
at once, all of them polled with one scheduler call per interval, each collected from its folder as it ends —
the same result.json / error.json reading as a local run.

The manifest records every job id the moment sbatch answers, so a controller killed at any instant loses nothing:
``--resume`` re-attaches to jobs still pending or running (never submits them again), collects those that finished
meanwhile, and plans again only runs whose job the scheduler has lost. ``--detach`` submits every pending run
(throttled by Slurm itself: each job depends on the one ``max_jobs_in_flight`` places before it) and returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from lem_runner.contract import ExperimentConfig

from llenergymeasure.errors import ConfigError, Interrupted, RunFailed, SetupError
from llenergymeasure.experiment import collect_run, prepare_run
from llenergymeasure.launchers.base import Timeouts
from llenergymeasure.launchers.slurm import LOST, JobStatus, SlurmLauncher, SubmittedJob, read_job_file
from llenergymeasure.launchers.slurm_script import job_name
from llenergymeasure.results import FileResultsRepository
from llenergymeasure.study.manifest import ManifestEntry, now, save_manifest
from llenergymeasure.study.resume import discard_partial, reset_entry
from llenergymeasure.study.summary import write_summary


@dataclass
class _InFlight:
    entry: ManifestEntry
    run_dir: Path
    config: ExperimentConfig
    job: SubmittedJob
    reattached: bool = False


class _Recorder(FileResultsRepository):
    def __init__(self, root: Path, entry: ManifestEntry, save) -> None:
        super().__init__(root)
        self.entry, self.save = entry, save

    def new_experiment_dir(self, name: str) -> Path:
        path = super().new_experiment_dir(name)
        self.entry.result_path = path.name
        self.save()
        return path


def run_concurrent(study, outcome, session, options, observer, launcher: SlurmLauncher, timeouts: Timeouts,
                   sleep=time.sleep) -> None:
    """Submit, poll and collect until every run has ended (or, with ``options.detach``, until all are submitted)."""
    manifest, study_dir = outcome.manifest, outcome.study_dir
    t_start = time.monotonic()
    busy = [0.0]  # the controller's own working time: submitting, polling, collecting (not waiting)

    def save() -> None:
        save_manifest(manifest, study_dir)

    def config_of(entry: ManifestEntry) -> ExperimentConfig:
        return outcome.points[entry.point].config.model_copy(update={"name": entry.name})

    limit = 1 if options.fail_fast else study.max_consecutive_failures
    first = config_of(manifest.entries[0]).slurm
    max_in_flight, interval = first.max_jobs_in_flight, first.poll_interval_s
    inflight: dict[str, _InFlight] = {}
    consecutive = 0
    stop = False
    lanes: list[str] = []  # detach: the job ids submitted so far, for the dependency chains

    def submit(entry: ManifestEntry) -> None:
        t = time.monotonic()
        config = config_of(entry)
        entry.status, entry.runner, entry.started, entry.attempts = "running", launcher.name, now(), entry.attempts + 1
        save()
        after = lanes[-max_in_flight] if options.detach and len(lanes) >= max_in_flight else None
        try:
            spec = prepare_run(config, _Recorder(study_dir, entry, save), None, timeouts)
            job = launcher.submit(spec, after=after)
        except (ConfigError, SetupError) as exc:
            entry.status, entry.error = "failed", str(exc)
            entry.reason = "setup" if isinstance(exc, SetupError) else "config"
            entry.finished = now()
            save()
            observer.run_finished(entry, outcome)
            busy[0] += time.monotonic() - t
            return
        lanes.append(job.job_id)
        entry.slurm_job_id, entry.slurm_state = job.job_id, "SUBMITTED"
        save()
        inflight[job.job_id] = _InFlight(entry, spec.exchange_dir, config, job)
        observer.run_started(entry, outcome, launcher.name)
        busy[0] += time.monotonic() - t

    def collect(item: _InFlight, status: JobStatus) -> None:
        nonlocal consecutive, stop
        entry = item.entry
        if status.state == LOST and item.reattached:
            if (item.job.exchange / "result.json").is_file():  # ended long ago, forgotten by the scheduler
                status = JobStatus(status.job_id, "COMPLETED", 0)
            else:  # the scheduler lost it: plan it again, never count it twice
                discard_partial(study_dir, manifest, entry)
                reset_entry(entry)
                save()
                return
        launched = launcher.finish(item.run_dir, item.job, status)
        try:
            result = collect_run(item.run_dir, item.config, launched, FileResultsRepository(study_dir))
        except (RunFailed, ConfigError) as exc:
            entry.status, entry.error = "failed", str(exc)
            entry.reason = exc.reason if isinstance(exc, RunFailed) else "config"
        else:
            entry.status, entry.error, entry.reason = "done", None, None
            outcome.results[entry.run] = result
        entry.slurm_state, entry.slurm_exit_code = status.state, status.exit_code
        entry.finished = now()
        if entry.started is not None:
            entry.duration_s = round((entry.finished - entry.started).total_seconds(), 4)
        session.runs += 1
        save()
        write_summary(study_dir, study, manifest, outcome.results)
        observer.run_finished(entry, outcome)
        consecutive = consecutive + 1 if entry.status == "failed" else 0
        if limit and consecutive >= limit:
            stop = True
            manifest.stop_reason = ("--fail-fast: a run failed" if options.fail_fast else
                                    f"circuit breaker: {consecutive} runs failed in a row "
                                    f"(max_consecutive_failures: {limit})")

    _reattach(manifest, study_dir, launcher, inflight, save, config_of)
    try:
        while True:
            pending = [e for e in manifest.entries if e.status == "pending"]
            while pending and not stop and (options.detach or len(inflight) < max_in_flight):
                submit(pending.pop(0))
            if options.detach:
                manifest.status = "detached"
                break
            if not inflight:
                break
            sleep(interval)
            t = time.monotonic()
            states = launcher.poll(i.job for i in inflight.values())  # one scheduler call for all
            changed = False
            for job_id, item in list(inflight.items()):
                status = states.get(job_id)
                if status is None:
                    continue
                if status.finished:
                    del inflight[job_id]
                    collect(item, status)
                elif status.state != item.entry.slurm_state:
                    item.entry.slurm_state, changed = status.state, True
            if changed:
                save()
            busy[0] += time.monotonic() - t
    except (Interrupted, KeyboardInterrupt):
        # Ctrl-C: lem's jobs go too — every running run's, including one whose sbatch answered a moment ago
        running = [e for e in manifest.entries if e.status == "running"]
        ids = {i.job.job_id for i in inflight.values()} | {e.slurm_job_id for e in running if e.slurm_job_id}
        for e in running:
            job = read_job_file(study_dir / e.result_path) if e.result_path else None
            if job is not None:
                ids.add(job.job_id)
        launcher.commands.cancel(ids)
        for entry in running:
            discard_partial(study_dir, manifest, entry)
            reset_entry(entry)
        save()
        raise
    finally:
        # runs overlap: the session's "runner time" is the wall time the controller spent waiting, so that
        # overhead = startup + the controller's own working time (submit, poll, collect)
        session.runner_s += max(0.0, time.monotonic() - t_start - busy[0])
    if manifest.status != "detached":
        manifest.status = "stopped" if stop or manifest.unfinished else "complete"


def _reattach(manifest, study_dir: Path, launcher: SlurmLauncher, inflight: dict, save, config_of) -> None:
    """Entries a previous controller left running: follow their jobs. One without a recorded job id (killed between
    sbatch and the manifest write) is looked up by its job name; one with no job at all is planned again."""
    left = [e for e in manifest.entries if e.status == "running"]
    unnamed = {job_name(e.result_path): e for e in left if not e.slurm_job_id and e.result_path}
    found = launcher.commands.find_by_name(unnamed) if unnamed else {}
    for entry in left:
        run_dir = study_dir / entry.result_path if entry.result_path else None
        job = read_job_file(run_dir) if run_dir is not None else None
        job_id = entry.slurm_job_id or (job.job_id if job else None) or (
            found.get(job_name(entry.result_path)) if entry.result_path else None)
        if run_dir is None or job_id is None:
            discard_partial(study_dir, manifest, entry)
            reset_entry(entry)
            continue
        if job is None or job.job_id != job_id:
            job = SubmittedJob(job_id, run_dir.resolve(), time.time())
        entry.slurm_job_id = job_id
        inflight[job_id] = _InFlight(entry, run_dir, config_of(entry), job, reattached=True)
    save()
