"""Run the runner as a Slurm job: the same exchange protocol (request.json in, result.json / error.json out, written
atomically by the runner), started by ``sbatch --parsable`` from a quoted batch script.

A study submits many jobs and asks about all of them with one ``squeue`` call per poll interval (``sacct`` only for
jobs the controller has already forgotten). The job's final Slurm state decides a run that left no result:
TIMEOUT, CANCELLED, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED are failed runs with that state, their log kept. Slurm's
allocation is the GPU lock (``allocates_devices``): lem's own lock guards this machine's GPUs, not a node's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lem_runner.contract import REQUEST_FILE
from lem_runner.contract.atomic import atomic_write_text

from llenergymeasure.errors import Interrupted, SetupError
from llenergymeasure.launchers.base import LOG_FILE, EventSink, Launcher, LaunchOutcome, LaunchSpec
from llenergymeasure.launchers.slurm_script import (
    EXCHANGE_MOUNT,
    MODEL_MOUNT,
    SCRIPT_FILE,
    batch_script,
    gpus_per_job,
    job_name,
    sbatch_args,
)

JOB_FILE = "slurm.json"  # in the run's folder: the job id, written as soon as sbatch answers
PROMPTS_NAME = "prompts.jsonl"
#: states in which a job is over; every one but COMPLETED is a failed run (when no result says otherwise)
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                          "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"})
LOST = "LOST"  # the scheduler knows nothing of the job (purged, or another cluster's)


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: str
    exit_code: int | None = None
    node: str | None = None
    reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES or self.state == LOST


class SlurmCommands:
    """Slurm's command-line tools, each call an argument list (never a shell). ``calls`` counts scheduler calls."""

    def __init__(self, timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s
        self.calls = 0

    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
        self.calls += 1
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=self.timeout_s,
                                  stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise SetupError(f"Slurm is not installed here ({args[0]} not found); run lem on a machine that can "
                             "submit jobs (a login node), or start a local cluster with make slurm-up") from None
        except subprocess.TimeoutExpired:
            raise SetupError(f"Slurm did not answer: {args[0]} took over {self.timeout_s:.0f} s") from None
        if check and proc.returncode != 0:
            raise SetupError(f"{args[0]} failed (exit {proc.returncode}): "
                             f"{(proc.stderr.strip().splitlines() or ['no message'])[-1][:300]}")
        return proc

    def reachable(self) -> str:
        """The partitions line of ``sinfo`` (SetupError when Slurm cannot be reached)."""
        return self._run(["sinfo", "-h", "-o", "%P %a %D %T %G"]).stdout.strip()

    def sbatch(self, args: list[str]) -> str:
        out = self._run(args).stdout.strip()
        job = out.split(";")[0]  # --parsable prints "id" or "id;cluster"
        if not job.isdigit():
            raise SetupError(f"sbatch printed no job id: {out[:200]!r}")
        return job

    def query(self, job_ids: Iterable[str]) -> dict[str, JobStatus]:
        """The state of every job in one ``squeue`` call; only ids it no longer knows go to ``sacct`` (one call)."""
        ids = sorted(set(job_ids), key=int)
        if not ids:
            return {}
        proc = self._run(["squeue", "--states=all", "-h", "-j", ",".join(ids),
                          "-O", "JobID:|,State:|,exit_code:|,NodeList:|,Reason:|"], check=False)
        found = {}
        if proc.returncode == 0:
            for line in proc.stdout.splitlines():
                parts = line.split("|")
                if len(parts) >= 5 and parts[0] in ids:
                    found[parts[0]] = JobStatus(parts[0], parts[1].strip(), _wait_status(parts[1], parts[2]),
                                                parts[3].strip() or None, parts[4].strip() or None)
        elif "Invalid job id" not in proc.stderr:
            raise SetupError(f"squeue failed: {(proc.stderr.strip().splitlines() or ['no message'])[-1][:300]}")
        missing = [i for i in ids if i not in found]
        if missing:
            found.update(self._sacct(missing))
        return found

    def _sacct(self, ids: list[str]) -> dict[str, JobStatus]:
        proc = self._run(["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "-o", "JobID,State,ExitCode,NodeList,Reason"],
                         check=False)
        found = {}
        for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
            parts = line.split("|")
            if len(parts) >= 5 and parts[0] in ids:
                state = parts[1].split()[0] if parts[1] else "UNKNOWN"  # "CANCELLED by 0"
                code, _, sig = parts[2].partition(":")
                exit_code = 128 + int(sig) if sig.isdigit() and int(sig) else int(code) if code.isdigit() else None
                found[parts[0]] = JobStatus(parts[0], state, exit_code, parts[3] or None, parts[4] or None)
        return found

    def find_by_name(self, names: Iterable[str]) -> dict[str, str]:
        """Job ids by job name (one squeue call): for a run whose controller died before it recorded its job id."""
        names = sorted(set(names))
        if not names:
            return {}
        proc = self._run(["squeue", "--states=all", "-h", "-n", ",".join(names), "-O", "JobID:|,Name:|"], check=False)
        out = {}
        for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
            parts = line.split("|")
            if len(parts) >= 2 and parts[1] in names:
                out[parts[1]] = parts[0]
        return out

    def cancel(self, job_ids: Iterable[str]) -> None:
        ids = sorted(set(job_ids))
        if ids:
            self._run(["scancel", *ids], check=False)


def _wait_status(state: str, raw: str) -> int | None:
    """squeue's exit_code is a wait status: exit code in the high byte, a signal in the low bits (as 128+N)."""
    if state.strip() == "COMPLETED":
        return 0
    raw = raw.strip()
    if not raw.isdigit():
        return None
    value = int(raw)
    return 128 + (value & 0x7F) if value & 0x7F else value >> 8


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    exchange: Path  # where the job reads its request and writes its result (the run's folder, or exchange_dir/<id>)
    submitted: float  # time.time() at submission


class SlurmLauncher(Launcher):
    """One Slurm job per run; ``launch`` submits and waits, a study uses ``submit`` / ``poll`` / ``finish``."""

    name = "slurm"
    concurrent = True
    allocates_devices = True  # the job's allocation keeps other jobs off its GPUs; no lem lock on this machine
    lost_grace_s = 60.0  # a job the scheduler has never heard of this long after sbatch is lost

    def __init__(self, commands: SlurmCommands | None = None, python: str | None = None) -> None:
        self.commands = commands or SlurmCommands()
        self.python = python

    def check_key(self, config):
        return ("slurm",)  # the scheduler, whatever the config

    def check(self, config=None) -> None:
        """Slurm answers here (SetupError, exit 3, in one line otherwise)."""
        try:
            self.commands.reachable()
        except SetupError as exc:
            raise SetupError(f"--slurm: {exc}") from None

    def submit(self, spec: LaunchSpec, after: str | None = None) -> SubmittedJob:
        """Write the request and the batch script into the exchange folder and sbatch it; the job id goes into the
        run's folder (``slurm.json``) at once, so a resumed controller finds the job instead of submitting again."""
        cfg = spec.request.config
        s = cfg.slurm
        exchange = (Path(s.exchange_dir).expanduser() / spec.request.experiment_id) if s.exchange_dir else spec.exchange_dir
        exchange = exchange.resolve()
        exchange.mkdir(parents=True, exist_ok=True)
        container = s.start != "process"
        prompts = None
        if spec.prompts_file is not None:
            shutil.copyfile(spec.prompts_file, exchange / PROMPTS_NAME)
            prompts = f"{EXCHANGE_MOUNT if container else exchange}/{PROMPTS_NAME}"
        update: dict = {"prompts_path": prompts, "model_path": spec.model.host_path}
        model_root = None
        if container:
            update["image"] = s.image
            if spec.model.mount_root is not None:
                model_root = str(spec.model.mount_root)
                update["model_path"] = f"{MODEL_MOUNT}/{spec.model.relative}".rstrip("/")
            if gpus_per_job(cfg):  # the container sees the job's GPUs renumbered from 0
                update["local_devices"] = list(range(len(cfg.devices)))
        atomic_write_text(exchange / REQUEST_FILE, spec.request.model_copy(update=update).model_dump_json(indent=2))
        image = s.image or (_default_image(cfg) if container else None)
        script = batch_script(cfg, spec.request.experiment_id, exchange, model_root,
                              s.python or self.python or sys.executable, image)
        atomic_write_text(exchange / SCRIPT_FILE, script)
        (exchange / SCRIPT_FILE).chmod(0o700)
        job_id = self.commands.sbatch(sbatch_args(cfg, spec.request.experiment_id, exchange, spec.timeouts, after))
        job = SubmittedJob(job_id, exchange, time.time())
        write_job_file(spec.exchange_dir, job)
        return job

    def poll(self, jobs: Iterable[SubmittedJob]) -> dict[str, JobStatus]:
        """Every job's status in one scheduler call; a job unknown past ``lost_grace_s`` after sbatch is LOST."""
        jobs = list(jobs)
        states = self.commands.query(j.job_id for j in jobs)
        now = time.time()
        for j in jobs:
            if j.job_id not in states and now - j.submitted > self.lost_grace_s:
                states[j.job_id] = JobStatus(j.job_id, LOST)
        return states

    def finish(self, run_dir: Path, job: SubmittedJob, status: JobStatus) -> LaunchOutcome:
        """Bring the exchange folder's files back into the run's folder (when they differ) and say how it ended."""
        if job.exchange != run_dir.resolve() and job.exchange.is_dir():
            for item in job.exchange.iterdir():
                if item.is_file():
                    shutil.copy2(item, run_dir / item.name)
        exit_code = status.exit_code if status.exit_code is not None else (0 if status.state == "COMPLETED" else -1)
        where = f"{job.job_id} on {status.node or '?'}"
        why = status.reason if status.reason and status.reason not in ("None", "NonZeroExitCode") else None
        return LaunchOutcome(exit_code=exit_code, log_file=run_dir / LOG_FILE, where=where,
                             scheduler_state=status.state, last_error=f"Slurm reason: {why}" if why else None)

    def cancel(self, jobs: Iterable[SubmittedJob]) -> None:
        self.commands.cancel(j.job_id for j in jobs)

    def launch(self, spec: LaunchSpec, on_event: EventSink) -> LaunchOutcome:
        """Submit, wait (one poll per ``slurm.poll_interval_s``), finish; Ctrl-C cancels the job."""
        job = self.submit(spec)
        interval = spec.request.config.slurm.poll_interval_s
        try:
            while True:
                status = self.poll([job]).get(job.job_id)
                if status is not None and status.finished:
                    return self.finish(spec.exchange_dir, job, status)
                time.sleep(interval)
        except KeyboardInterrupt:
            self.cancel([job])
            raise Interrupted(f"interrupted: Slurm job {job.job_id} cancelled") from None


def _default_image(config) -> str:
    from llenergymeasure.images.catalog import image_tag

    return image_tag(config.backend, cpu=gpus_per_job(config) == 0)


def write_job_file(run_dir: Path, job: SubmittedJob) -> None:
    atomic_write_text(run_dir / JOB_FILE, json.dumps({
        "job_id": job.job_id, "job_name": job_name(run_dir.name), "exchange": str(job.exchange),
        "submitted": datetime.fromtimestamp(job.submitted, UTC).isoformat()}, indent=2))


def read_job_file(run_dir: Path) -> SubmittedJob | None:
    try:
        data = json.loads((run_dir / JOB_FILE).read_text())
        return SubmittedJob(str(data["job_id"]), Path(data["exchange"]),
                            datetime.fromisoformat(data["submitted"]).timestamp())
    except (OSError, ValueError, KeyError, TypeError):
        return None
