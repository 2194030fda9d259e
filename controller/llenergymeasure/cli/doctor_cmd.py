"""`lem doctor`: print what works and what is missing on this machine."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape
from rich.table import Table

from llenergymeasure.doctor import run_checks
from llenergymeasure.render.console import make_console


def doctor(
    restore_gpu: bool = typer.Option(False, "--restore-gpu", help="Put back the power limit and clocks a killed lem "
                                     "left changed (from its restore journal), then exit."),
) -> None:
    """Check Docker, the NVIDIA runtime, GPUs, NVML, images, local backends and Slurm; say how to fix what is missing."""
    if restore_gpu:
        from llenergymeasure.errors import SetupError
        from llenergymeasure.gpustate.apply import restore_host

        done, failed = restore_host()
        for line in done or ([] if failed else ["no GPU restore journal on this host: nothing to restore"]):
            print(line)
        for line in failed[:-1]:
            print(f"error: {line}", file=sys.stderr)
        if failed:
            raise SetupError(failed[-1])
        return
    table = Table("check", "", "detail", "fix")
    for c in run_checks():
        table.add_row(escape(c.name), "[green]ok[/]" if c.ok else "[red]missing[/]", escape(c.detail), escape(c.fix))
    make_console().print(table)
