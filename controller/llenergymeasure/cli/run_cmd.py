"""`lem run`: measure one experiment, locally or in its backend's container (--isolated)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from llenergymeasure.config import load_config
from llenergymeasure.display import RunDisplay, render_summary
from llenergymeasure.experiment import execute_experiment
from llenergymeasure.launchers import Timeouts
from llenergymeasure.launchers.select import select_launcher


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
    """Measure one experiment and write results/<experiment>/result.json."""
    overrides = {
        "model": model, "backend": backend, "pytorch.batch_size": batch_size, "n_prompts": n_prompts,
        "max_output_tokens": max_output_tokens, "dtype": dtype, "device": device, "name": name,
    }
    cfg = load_config(config, overrides)
    launcher = select_launcher(cfg, isolated=isolated, image=image)
    console = Console(highlight=False)
    title = f"{cfg.experiment_name} · {cfg.backend} · {launcher.name} runner"
    with RunDisplay(console, title) as display:
        result, exp_dir = execute_experiment(
            cfg, output=output, launcher=launcher, on_event=display, timeouts=Timeouts(timeout, silence_timeout)
        )
    render_summary(console, result, exp_dir)
