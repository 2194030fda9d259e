"""`lem doctor`: print what works and what is missing on this machine."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from llenergymeasure.display import make_console
from llenergymeasure.doctor import run_checks


def doctor() -> None:
    """Check Docker, the NVIDIA runtime, GPUs, NVML, images, local backends and Slurm; say how to fix what is missing."""
    table = Table("check", "", "detail", "fix")
    for c in run_checks():
        table.add_row(escape(c.name), "[green]ok[/]" if c.ok else "[red]missing[/]", escape(c.detail), escape(c.fix))
    make_console().print(table)
