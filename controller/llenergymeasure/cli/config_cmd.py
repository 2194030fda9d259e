"""`lem config validate|show`: check a config without running it, or print it fully resolved."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from llenergymeasure.config import load_config

app = typer.Typer(help="Check and show experiment configs.", no_args_is_help=True)


@app.command("validate")
def validate(path: Path = typer.Argument(..., help="Config file.")) -> None:
    """Exit 0 if the config is valid; otherwise one line naming the field, exit 2."""
    cfg = load_config(path)
    typer.echo(f"{path}: valid ({cfg.experiment_name}, backend {cfg.backend}, model {cfg.model})")


@app.command("show")
def show(path: Path = typer.Argument(..., help="Config file.")) -> None:
    """Print the config with every default filled in, as YAML."""
    cfg = load_config(path)
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False).rstrip())
