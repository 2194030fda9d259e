"""`lem run`: measure one experiment, locally or in its backend's container (--isolated)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from llenergymeasure.config import load_config
from llenergymeasure.config.loader import read_config_file
from llenergymeasure.display import RunDisplay, make_console, render_comparison, render_summary
from llenergymeasure.experiment import execute_experiment
from llenergymeasure.launchers import Timeouts
from llenergymeasure.launchers.select import select_launcher
from llenergymeasure.study import cv_warnings, execute_study, expand_study, is_study, load_study


def run(
    config: Path | None = typer.Argument(None, help="Experiment config (YAML or JSON). Flags override its values."),
    model: str | None = typer.Option(None, "--model", "-m", help="Hub id, local folder, or the embedded default."),
    backend: str | None = typer.Option(None, "--backend", "-b", help="Inference backend."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Prompts per generate call (pytorch)."),
    n_prompts: int | None = typer.Option(None, "--n-prompts", "-n", help="Prompts measured in the window."),
    max_output_tokens: int | None = typer.Option(None, "--max-output-tokens", help="Tokens generated per prompt."),
    dtype: str | None = typer.Option(None, "--dtype", help="auto | float32 | float16 | bfloat16"),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda"),
    name: str | None = typer.Option(None, "--name", help="Experiment name (the result folder's prefix)."),
    output: Path = typer.Option(Path("results"), "--output", "-o", help="Results directory."),
    isolated: bool = typer.Option(False, "--isolated", help="Run in the backend's container image."),
    image: str | None = typer.Option(None, "--image", help="Runner image to use (implies --isolated)."),
    timeout: float | None = typer.Option(None, "--timeout", help="Wall-clock limit for the runner, seconds."),
    silence_timeout: float = typer.Option(900.0, "--silence-timeout", help="Stop a runner silent this long, seconds."),
) -> None:
    """Measure one experiment (or each experiment of a study file) and write results/<experiment>/result.json."""
    overrides = {
        "model": model, "backend": backend, "pytorch.batch_size": batch_size, "n_prompts": n_prompts,
        "max_output_tokens": max_output_tokens, "dtype": dtype, "device": device, "name": name,
    }
    timeouts = Timeouts(timeout, silence_timeout)
    if config is not None and is_study(read_config_file(config)):
        raise typer.Exit(_run_study(config, overrides, output, isolated, timeouts))
    cfg = load_config(config, overrides)
    launcher = select_launcher(cfg, isolated=isolated, image=image)
    console = make_console()
    title = f"{cfg.experiment_name} · {cfg.backend} · {launcher.name} runner"
    with RunDisplay(console, title) as display:
        result, exp_dir = execute_experiment(
            cfg, output=output, launcher=launcher, on_event=display, timeouts=timeouts
        )
    render_summary(console, result, exp_dir)


def _run_study(path: Path, overrides: dict, output: Path, isolated: bool, timeouts: Timeouts) -> int:
    """Run a study file; exit 1 if any experiment failed (the others still ran)."""
    study = load_study(path, {k: v for k, v in overrides.items() if k != "name"})
    expansion = expand_study(study, str(path))
    console = make_console()
    for reason in expansion.skipped:
        console.print(f"[yellow]skipped[/] {escape(reason)}")
    displays: list[RunDisplay] = []

    def on_point(i: int, n: int, point, runner: str, cycle: int) -> None:
        if displays:
            displays.pop().__exit__(None, None, None)
        where = f" · cycle {cycle}/{study.n_cycles}" if study.n_cycles > 1 else ""
        displays.append(RunDisplay(console, f"[{i}/{n}] {point.label}{where} · {runner} runner").__enter__())

    try:
        outcome = execute_study(study, expansion, output=output, isolated=isolated, on_point=on_point,
                                on_event=lambda e: displays[-1](e) if displays else None, timeouts=timeouts)
    finally:
        if displays:
            displays.pop().__exit__(None, None, None)
    aggregates = outcome.aggregates()
    render_comparison(console, outcome.outcomes, outcome.study_dir, n_cycles=study.n_cycles, aggregates=aggregates,
                      warnings=cv_warnings(aggregates))
    return 1 if outcome.failed else 0
