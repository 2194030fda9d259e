"""`lem run`: measure one experiment, locally or in its backend's container (--isolated), or run a study file
(resumable with --resume). A thin shell over llenergymeasure.plan, the path the Python API takes too: this module
turns flags into RunOptions and results into the display and an exit code."""

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
from llenergymeasure.config.host_checks import config_warnings
from llenergymeasure.config.loader import format_problems
from llenergymeasure.errors import ConfigError
from llenergymeasure.host.gpu_lock import LockPolicy
from llenergymeasure.launchers import Timeouts
from llenergymeasure.plan import RunOptions, StudyPlan, plan
from llenergymeasure.plan import dry_run as plan_dry_run
from llenergymeasure.render.console import make_console
from llenergymeasure.render.progress import RunDisplay, StudyDisplay
from llenergymeasure.render.study import render_study
from llenergymeasure.render.summary import render_summary
from llenergymeasure.study import StudyInterrupted, cv_warnings

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
    cycles: int | None = typer.Option(None, "--cycles", help="Study: times each point runs (overrides n_cycles)."),
    order: str | None = typer.Option(
        None, "--order", help="Study: sequential | interleave | shuffle | latin_square (overrides order)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Expand and validate, estimate each point's memory against the device; run nothing."
    ),
    no_lock: bool = typer.Option(False, "--no-lock", help="Measure even if another lem holds the GPU's lock."),
    lock_timeout: float | None = typer.Option(
        None, "--lock-timeout", min=0, help="Give up (exit 3) if a GPU is still busy after this many seconds."
    ),
) -> None:
    """Measure one experiment (or each experiment of a study file) and write results/<experiment>/result.json."""
    if study_dir is not None and not resume:
        raise ConfigError(f"'{study_dir}': a second argument is the study folder for --resume")
    overrides = {
        "model": model, "backend": backend, BATCH_SIZE: batch_size, "n_prompts": n_prompts,
        "max_output_tokens": max_output_tokens, "dtype": dtype, "device": device, "name": name,
    }
    options = RunOptions(
        output=output, overrides=overrides, isolated=isolated, image=image, slurm=slurm,
        timeouts=Timeouts(timeout, silence_timeout),
        lock=LockPolicy(enabled=not no_lock, timeout_s=lock_timeout, notify=_notify),
        resume=(study_dir or True) if resume else None, retry_failed=retry_failed, fail_fast=fail_fast,
        no_gaps=no_gaps, detach=detach, allow_skipped=allow_skipped, n_cycles=cycles, order=order,
    )
    if config is None and model is None and not dry_run:
        _show_plan(load_config(None, overrides), overrides)
        raise typer.Exit(EXIT_NOTHING_ASKED)
    if dry_run:
        raise typer.Exit(_dry_run(config, options))
    planned = plan(config, options)
    _warn(planned)
    if isinstance(planned, StudyPlan):
        raise typer.Exit(_run_study(planned))
    console = make_console()
    title = f"{planned.config.experiment_name} · {planned.config.backend} · {planned.launcher.name} runner"
    with RunDisplay(console, title) as display:
        result, exp_dir = planned.run(on_event=display)
    render_summary(console, result, exp_dir)


def _warn(planned) -> None:
    """Settings that are valid but surely a mistake (an SLO bound in seconds): said on stderr, once each, before the
    run starts."""
    configs = [p.config for p in planned.expansion.points] if isinstance(planned, StudyPlan) else [planned.config]
    said: list[str] = []
    for line in (w for c in configs for w in config_warnings(c)):
        if line not in said:
            said.append(line)
            Console(stderr=True, highlight=False).print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)


def _notify(line: str) -> None:
    Console(stderr=True, highlight=False).print(f"[yellow]waiting:[/] {escape(line)}", soft_wrap=True)


def _dry_run(config: Path | None, options: RunOptions) -> int:
    """Print each point's memory estimate; exit 2 naming every point that cannot fit, else 0."""
    from llenergymeasure.memory import render_estimates

    planned, estimates = plan_dry_run(config, options)
    _warn(planned)
    render_estimates(make_console(), estimates)
    refused = [e for e in estimates if not e.fits]
    if refused:
        raise ConfigError(format_problems(planned.source, [e.refusal() for e in refused]))
    return 0


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


def _run_study(planned: StudyPlan) -> int:
    """Run (or resume) a planned study. Exit 0 when every run is done, 1 when some failed or the circuit breaker
    stopped it, 130 on Ctrl-C; the last two leave it resumable. (Flags with no effect on the study and invalid
    points without ``--allow-skipped`` were refused, exit 2, when it was planned.)"""
    console = make_console()
    for reason in planned.expansion.skipped:
        console.print(f"[yellow]skipped[/] {escape(reason)}")
    gap = 0.0 if planned.options.no_gaps else planned.study.gap_seconds
    try:
        with StudyDisplay(console, planned.study.n_cycles, gap) as display:
            outcome = planned.run(observer=display)
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
