"""`lem run`: measure one experiment, locally or in its backend's container (--isolated), or run a study file
(resumable with --resume)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer
from lem_runner.contract import registry
from rich.console import Console
from rich.markup import escape

from llenergymeasure.config import load_config
from llenergymeasure.config.checks import BATCH_SIZE, FLAGS
from llenergymeasure.config.loader import format_problems, read_config_file
from llenergymeasure.errors import ConfigError
from llenergymeasure.experiment import execute_experiment
from llenergymeasure.host.gpu_lock import LockPolicy, use_policy
from llenergymeasure.launchers import Timeouts
from llenergymeasure.launchers.select import preflight_containers, select_launcher
from llenergymeasure.render.console import make_console
from llenergymeasure.render.progress import RunDisplay, StudyDisplay
from llenergymeasure.render.study import render_study
from llenergymeasure.render.summary import render_summary
from llenergymeasure.results.output_path import check_output_dir
from llenergymeasure.study import (
    StudyInterrupted,
    StudyOptions,
    cv_warnings,
    execute_study,
    expand_study,
    is_study,
    load_study,
    unused_flags,
)

_STUDY_ONLY = ("--resume", "--fail-fast", "--no-gaps", "--retry-failed", "--detach", "--allow-skipped")
#: exit code of a bare `lem run` (no config, no --model): a usage error, nothing was asked to be measured
EXIT_NOTHING_ASKED = 2


def run(
    config: Path | None = typer.Argument(None, help="Experiment config (YAML or JSON). Flags override its values."),
    study_dir: Path | None = typer.Argument(
        None, metavar="[DIR]", help="With --resume: the study folder (default: its newest unfinished one)."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="Hub id, local folder, or the embedded default."),
    backend: str | None = typer.Option(None, "--backend", "-b", help="Inference backend."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="The backend's batch knob (" + ", ".join(
        s.batch_knob for s in registry().values() if s.batch_knob) + ")."),
    n_prompts: int | None = typer.Option(None, "--n-prompts", "-n", help="Prompts measured in the window."),
    max_output_tokens: int | None = typer.Option(None, "--max-output-tokens", help="Tokens generated per prompt."),
    dtype: str | None = typer.Option(None, "--dtype", help="auto | float32 | float16 | bfloat16"),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda"),
    name: str | None = typer.Option(None, "--name", help="Experiment name (the result folder's prefix)."),
    output: Path = typer.Option(Path("results"), "--output", "-o", help="Results directory."),
    isolated: bool = typer.Option(False, "--isolated", help="Run in the backend's container image."),
    image: str | None = typer.Option(None, "--image", help="Runner image to use (implies --isolated)."),
    slurm: bool = typer.Option(False, "--slurm", help="Run as Slurm jobs (runner: slurm; settings in slurm:)."),
    detach: bool = typer.Option(False, "--detach", help="Study on Slurm: submit every run and return; "
                                "--resume collects them."),
    timeout: float | None = typer.Option(None, "--timeout", help="Wall-clock limit for the runner, seconds."),
    silence_timeout: float = typer.Option(900.0, "--silence-timeout", help="Stop a runner silent this long, seconds."),
    resume: bool = typer.Option(False, "--resume", help="Study: finish an interrupted study (DIR, or its newest)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Study, with --resume: run failed runs again."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Study: stop at the first failed run (resumable)."),
    no_gaps: bool = typer.Option(False, "--no-gaps", help="Study: no pauses between runs."),
    allow_skipped: bool = typer.Option(
        False, "--allow-skipped", help="Study: run the valid points even if some are invalid (default: exit 2)."
    ),
    no_lock: bool = typer.Option(False, "--no-lock", help="Measure even if another lem holds the GPU's lock."),
    lock_timeout: float | None = typer.Option(
        None, "--lock-timeout", min=0, help="Give up (exit 3) if a GPU is still busy after this many seconds."
    ),
) -> None:
    """Measure one experiment (or each experiment of a study file) and write results/<experiment>/result.json."""
    output = check_output_dir(output)
    policy = LockPolicy(enabled=not no_lock, timeout_s=lock_timeout, notify=_notify)
    with use_policy(policy):
        _run(config, study_dir, model, backend, batch_size, n_prompts, max_output_tokens, dtype, device, name,
             output, isolated, image, timeout, silence_timeout, resume, retry_failed, fail_fast, no_gaps, slurm,
             detach, allow_skipped)


def _notify(line: str) -> None:
    Console(stderr=True, highlight=False).print(f"[yellow]waiting:[/] {escape(line)}", soft_wrap=True)


def _run(config, study_dir, model, backend, batch_size, n_prompts, max_output_tokens, dtype, device, name, output,
         isolated, image, timeout, silence_timeout, resume, retry_failed, fail_fast, no_gaps, slurm=False,
         detach=False, allow_skipped=False) -> None:
    if slurm and (isolated or image):
        raise ConfigError("--slurm: not with --isolated/--image (pick a container with slurm.start and slurm.image)")
    overrides = {
        "model": model, "backend": backend, BATCH_SIZE: batch_size, "n_prompts": n_prompts,
        "max_output_tokens": max_output_tokens, "dtype": dtype, "device": device, "name": name,
        "runner": "slurm" if slurm else None,
    }
    timeouts = Timeouts(timeout, silence_timeout)
    if config is not None and is_study(read_config_file(config)):
        if study_dir is not None and not resume:
            raise ConfigError(f"'{study_dir}': a second argument is the study folder for --resume")
        if retry_failed and not resume:
            raise ConfigError("--retry-failed: only with --resume")
        options = StudyOptions(isolated=isolated, no_gaps=no_gaps, fail_fast=fail_fast, retry_failed=retry_failed,
                               resume=(study_dir or True) if resume else None, timeouts=timeouts,
                               study_file=str(config), detach=detach)
        raise typer.Exit(_run_study(config, overrides, output, options, allow_skipped))
    used = [flag for flag, on in zip(_STUDY_ONLY, (resume, fail_fast, no_gaps, retry_failed, detach, allow_skipped))
            if on]
    if used or study_dir is not None:
        raise ConfigError(f"{used[0] if used else repr(str(study_dir))}: only for a study file "
                          "(one with base:, sweep: or experiments:)")
    cfg = load_config(config, overrides)
    if config is None and model is None:
        _show_plan(cfg, overrides)
        raise typer.Exit(EXIT_NOTHING_ASKED)
    launcher = select_launcher(cfg, isolated=isolated, image=image)
    if launcher.name in ("docker", "slurm"):  # engine/image or scheduler checked before a result folder exists
        launcher.check(cfg)
    console = make_console()
    title = f"{cfg.experiment_name} · {cfg.backend} · {launcher.name} runner"
    with RunDisplay(console, title) as display:
        result, exp_dir = execute_experiment(
            cfg, output=output, launcher=launcher, on_event=display, timeouts=timeouts
        )
    render_summary(console, result, exp_dir)


def _show_plan(cfg, overrides: dict) -> None:
    """A bare `lem run` measures nothing: say what it would run and how to start it."""
    flags = " ".join(f"{FLAGS[k]} {shlex.quote(str(v))}" for k, v in overrides.items() if v is not None)
    typer.echo(f"lem run needs a config file or --model; nothing was measured. With the defaults it would run "
               f"{cfg.model} on {cfg.backend}: {cfg.n_prompts} prompts x {cfg.max_output_tokens} output tokens.")
    typer.echo(f"  start it:       lem run --model {shlex.quote(cfg.model)}{' ' + flags if flags else ''}")
    typer.echo("  or from a file: lem config init && lem run lem.yaml")


def _resume_command(study_dir: Path) -> str:
    """The command that resumes this study: this one's arguments, with --resume and the folder."""
    args = [a for a in sys.argv[1:] if a not in ("--resume", "--retry-failed", "--fail-fast", "--detach")]
    args = [a for a in args if Path(a) != study_dir]
    return " ".join(shlex.quote(a) for a in ["lem", *args, "--resume", str(study_dir)])


def _run_study(path: Path, overrides: dict, output: Path, options: StudyOptions, allow_skipped: bool = False) -> int:
    """Run (or resume) a study file. Exit 0 when every run is done, 1 when some failed or the circuit breaker
    stopped it, 130 on Ctrl-C; the last two leave it resumable. Exit 2 before anything runs for a flag with no
    effect on the study, or invalid points without ``allow_skipped``."""
    raw = load_study(path)
    problems = unused_flags(raw, overrides)
    if problems:
        raise ConfigError(format_problems(str(path), problems))
    study = load_study(path, overrides)
    expansion = expand_study(study, str(path))
    if not allow_skipped:
        expansion.refuse_invalid(str(path))
    preflight_containers([p.config for p in expansion.points], options.isolated)
    if any(p.config.runner == "slurm" for p in expansion.points):
        from llenergymeasure.launchers.slurm import SlurmLauncher

        SlurmLauncher().check()  # no Slurm here: one line, exit 3, before a study folder exists
    elif options.detach:
        raise ConfigError("--detach: only for a study whose runs go to Slurm (runner: slurm or --slurm)")
    console = make_console()
    for reason in expansion.skipped:
        console.print(f"[yellow]skipped[/] {escape(reason)}")
    gap = 0.0 if options.no_gaps else study.gap_seconds
    try:
        with StudyDisplay(console, study.n_cycles, gap) as display:
            outcome = execute_study(study, expansion, output=output, options=options, observer=display)
    except StudyInterrupted as exc:
        render_study(console, exc.outcome)
        console.print(f"[bold red]interrupted[/]: resume with {escape(_resume_command(exc.outcome.study_dir))}")
        return 130
    if outcome.status == "detached":
        jobs = sum(1 for e in outcome.manifest.entries if e.status == "running")
        console.print(f"[bold]detached[/]: {jobs} Slurm job(s) submitted for {escape(str(outcome.study_dir))}; "
                      f"collect them with {escape(_resume_command(outcome.study_dir))}")
        return 0
    aggregates = outcome.aggregates()
    render_study(console, outcome, warnings=cv_warnings(aggregates),
                 resume_hint=_resume_command(outcome.study_dir))
    return 1 if outcome.failed or outcome.status != "complete" else 0
