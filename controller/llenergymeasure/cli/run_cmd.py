"""`lem run`: measure one experiment, locally or in its backend's container (--isolated), or run a study file
(resumable with --resume). A thin shell over llenergymeasure.plan, the path the Python API takes too: this module
turns flags into RunOptions and results into the display and an exit code. Each run option's flag, help and default
come from its RunOptions declaration (llenergymeasure.options), so the CLI, the API and studies cannot drift."""

from __future__ import annotations

import shlex
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import typer
from lem_runner.contract import registry
from rich.console import Console
from rich.markup import escape

from llenergymeasure.config import load_config
from llenergymeasure.config.checks import BATCH_SIZE, FLAGS
from llenergymeasure.config.loader import format_problems
from llenergymeasure.errors import ConfigError
from llenergymeasure.host.gpu_lock import LockPolicy
from llenergymeasure.launchers import Timeouts
from llenergymeasure.options import option_meta
from llenergymeasure.plan import RunOptions, StudyPlan, plan
from llenergymeasure.plan import dry_run as plan_dry_run
from llenergymeasure.render.console import make_console
from llenergymeasure.render.progress import RunDisplay, StudyDisplay
from llenergymeasure.render.study import render_study
from llenergymeasure.render.summary import render_summary
from llenergymeasure.study import StudyInterrupted, cv_warnings

#: exit code of a bare `lem run` (no config, no --model): a usage error, nothing was asked to be measured
EXIT_NOTHING_ASKED = 2
_DEFAULTS = {f.name: getattr(RunOptions(), f.name) for f in fields(RunOptions)}


def _option(name: str, *short: str, sub: str | None = None, default: Any = ..., **typer_kwargs: Any) -> Any:
    """The typer option of RunOptions field ``name`` (``sub``: one value of a composite field such as timeouts),
    its flag, help and default read from the field's declaration."""
    meta = option_meta(name)
    flag, help_text = meta["flags"][sub] if sub else (meta["flag"], meta["help"])
    if default is ...:
        value = _DEFAULTS[name]
        default = getattr(value, sub) if sub else value
    return typer.Option(default, flag, *short, help=help_text, **typer_kwargs)


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
    output: Path = _option("output", "-o"),
    isolated: bool = _option("isolated"),
    image: str | None = _option("image"),
    slurm: bool = _option("slurm"),
    detach: bool = _option("detach"),
    timeout: float | None = _option("timeouts", sub="wall_s"),
    silence_timeout: float = _option("timeouts", sub="silence_s"),
    resume: bool = _option("resume", default=False),
    retry_failed: bool = _option("retry_failed"),
    fail_fast: bool = _option("fail_fast"),
    no_gaps: bool = _option("no_gaps"),
    allow_skipped: bool = _option("allow_skipped"),
    cycles: int | None = _option("n_cycles"),
    order: str | None = _option("order"),
    dry_run: bool = _option("dry_run"),
    no_lock: bool = _option("lock", sub="enabled", default=False),
    lock_timeout: float | None = _option("lock", sub="timeout_s", default=None, min=0),
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
    if isinstance(planned, StudyPlan):
        raise typer.Exit(_run_study(planned))
    console = make_console()
    title = f"{planned.config.experiment_name} · {planned.config.backend} · {planned.launcher.name} runner"
    with RunDisplay(console, title) as display:
        result, exp_dir = planned.run(on_event=display)
    render_summary(console, result, exp_dir)


def _notify(line: str) -> None:
    Console(stderr=True, highlight=False).print(f"[yellow]waiting:[/] {escape(line)}", soft_wrap=True)


def _dry_run(config: Path | None, options: RunOptions) -> int:
    """Print each point's memory estimate; exit 2 naming every point that cannot fit, else 0."""
    from llenergymeasure.memory import render_estimates

    planned, estimates = plan_dry_run(config, options)
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
