"""The batch script and the sbatch arguments of one Slurm job, from templates.

sbatch gets its options as separate arguments (no shell sees them). The batch script is the only shell code, and
every value put into it is quoted with :func:`shlex.quote`; user text never reaches a shell unquoted. A container
start (docker/podman) traps TERM so ``scancel`` removes the container too — a ``docker run`` container belongs to
the engine, not to the job, and would outlive it otherwise.
"""

from __future__ import annotations

import math
import os
import shlex
from pathlib import Path

from lem_runner.contract import REQUEST_FILE, ExperimentConfig
from lem_runner.contract.atomic import current_umask

from llenergymeasure.launchers.base import LOG_FILE, Timeouts

EXCHANGE_MOUNT = "/lem/exchange"
MODEL_MOUNT = "/lem/model"
SCRIPT_FILE = "job.sh"
#: the job's variables the runner records (environment.allocation); containers get them passed by name
PASS_VARS = ("SLURM_JOB_ID", "SLURM_CLUSTER_NAME", "SLURM_JOB_PARTITION", "SLURMD_NODENAME", "SLURM_CPUS_ON_NODE",
             "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "CUDA_VISIBLE_DEVICES")
CONTAINER_PYTHON = "/opt/lem/bin/python"  # the runner images' interpreter (images/*/Dockerfile)


def gpus_per_job(config: ExperimentConfig) -> int:
    s = config.slurm
    if s.gpus_per_job is not None:
        return s.gpus_per_job
    return len(config.devices) if config.device == "cuda" else 0


def time_limit(config: ExperimentConfig, timeouts: Timeouts) -> str | None:
    """``slurm.time_limit``, else the run's wall-clock limit rounded up to whole minutes (Slurm's unit)."""
    if config.slurm.time_limit:
        return config.slurm.time_limit
    if timeouts.wall_s is not None:
        return str(max(1, math.ceil(timeouts.wall_s / 60)))
    return None


def job_name(experiment_id: str) -> str:
    return f"lem-{experiment_id}"


def sbatch_args(config: ExperimentConfig, experiment_id: str, exchange: Path, timeouts: Timeouts,
                after: str | None = None) -> list[str]:
    """The sbatch command line, one argument per option: nothing here goes through a shell."""
    s = config.slurm
    args = ["sbatch", "--parsable", f"--job-name={job_name(experiment_id)}", f"--output={exchange / LOG_FILE}",
            "--open-mode=append", "--requeue" if s.requeue else "--no-requeue"]
    for flag, value in (("--partition", s.partition), ("--account", s.account), ("--qos", s.qos),
                        ("--constraint", s.constraint), ("--time", time_limit(config, timeouts)),
                        ("--cpus-per-task", s.cpus_per_job), ("--mem", s.mem_per_job)):
        if value is not None:
            args.append(f"{flag}={value}")
    if gpus_per_job(config):
        args.append(f"--gpus={gpus_per_job(config)}")
    if after:
        args.append(f"--dependency=afterany:{after}")
    args += list(s.extra_sbatch_options)
    args.append(str(exchange / SCRIPT_FILE))
    return args


def _q(*parts: object) -> str:
    return " ".join(shlex.quote(str(p)) for p in parts)


def batch_script(config: ExperimentConfig, experiment_id: str, exchange: Path, model_root: str | None,
                 python: str, image: str | None) -> str:
    """The job's script: environment, then the runner started the way ``slurm.start`` says."""
    start = config.slurm.start
    lines = ["#!/bin/bash", f"# lem run {experiment_id} ({start}); written by llenergymeasure, every value quoted",
             "set -u", "export PYTHONUNBUFFERED=1 LEM_IN_SLURM=1",
             f"export HF_HUB_OFFLINE={'0' if config.allow_model_download else '1'}",
             f"cd {shlex.quote(str(exchange))}"]
    runner_args = ["--config", f"{EXCHANGE_MOUNT}/{REQUEST_FILE}", "--out", EXCHANGE_MOUNT]
    gpus = gpus_per_job(config) > 0
    if start == "process":
        lines.append("exec " + _q(python, "-m", "lem_runner", "--config", exchange / REQUEST_FILE, "--out", exchange))
    elif start in ("docker", "podman"):
        lines += _container_lines(start, config, experiment_id, exchange, model_root, image, runner_args, gpus)
    elif start == "apptainer":
        binds = [f"{exchange}:{EXCHANGE_MOUNT}"] + ([f"{model_root}:{MODEL_MOUNT}:ro"] if model_root else [])
        lines += [f"export APPTAINERENV_{v}=\"${{{v}:-}}\"" for v in PASS_VARS]
        lines.append("exec " + _q("apptainer", "run", "--containall", "--cleanenv", "--no-home", "--bind",
                                  ",".join(binds), *(["--nv"] if gpus else []), image, *runner_args))
    else:  # enroot through pyxis: srun --container-image
        mounts = [f"{exchange}:{EXCHANGE_MOUNT}"] + ([f"{model_root}:{MODEL_MOUNT}:ro"] if model_root else [])
        lines.append("exec " + _q("srun", f"--container-image={image}", f"--container-mounts={','.join(mounts)}",
                                  "--no-container-entrypoint", CONTAINER_PYTHON, "-m", "lem_runner", *runner_args))
    return "\n".join(lines) + "\n"


def _container_lines(engine: str, config: ExperimentConfig, experiment_id: str, exchange: Path,
                     model_root: str | None, image: str | None, runner_args: list[str], gpus: bool) -> list[str]:
    """``docker run`` in the background with a TERM trap that removes the container when Slurm ends the job."""
    args = [engine, "run", "--rm", "--init", "--name", f"lem-{experiment_id}", "--user", f"{os.getuid()}:{os.getgid()}",
            "--label", "lem.managed=true", "--label", f"lem.experiment={experiment_id}", "--label", "lem.slurm=true",
            "-v", f"{exchange}:{EXCHANGE_MOUNT}:rw", "--network", "bridge" if config.allow_model_download else "none",
            "--read-only", "--tmpfs", "/tmp:rw,exec,nosuid,size=4g", "--shm-size", config.spec.shm_size,
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "-e", f"HF_HUB_OFFLINE={'0' if config.allow_model_download else '1'}", "-e", "LEM_IN_CONTAINER=1",
            "-e", f"LEM_UMASK={current_umask():04o}"]
    if config.spec.ipc_mode:
        args += ["--ipc", config.spec.ipc_mode]
    if model_root:
        args += ["-v", f"{model_root}:{MODEL_MOUNT}:ro"]
    for var in PASS_VARS:  # by name: the value comes from the job's environment
        args += ["-e", var]
    head = _q(*args)
    gpu = ' --gpus "device=${CUDA_VISIBLE_DEVICES}"' if gpus else ""
    return [f"name={shlex.quote(f'lem-{experiment_id}')}",
            f"cleanup() {{ {shlex.quote(engine)} rm -f \"$name\" >/dev/null 2>&1; }}",
            "trap 'cleanup; exit 143' TERM INT",
            f"{head}{gpu} {_q(image, *runner_args)} &",
            "wait $!", "rc=$?", "cleanup", "exit $rc"]
