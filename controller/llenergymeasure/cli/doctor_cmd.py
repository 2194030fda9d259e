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
    from llenergymeasure.render.fit import Column, natural_width

    checks = run_checks()
    console = make_console()
    columns = [Column("check", [escape(c.name) for c in checks]), Column("", ["missing"]),
               Column("detail", [escape(c.detail) for c in checks]), Column("fix", [escape(c.fix) for c in checks])]
    if natural_width(columns) + 1 <= console.width:  # wide enough for one line per check
        table = Table("check", "", "detail", "fix")
        for c in checks:
            table.add_row(escape(c.name), "[green]ok[/]" if c.ok else "[red]missing[/]", escape(c.detail),
                          escape(c.fix))
        console.print(table)
        return
    # narrow: a status column and the check's text, wrapped between words (image names, commands stay whole)
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for c in checks:
        text = f"[bold]{escape(c.name)}[/]: {escape(c.detail)}" + (f"\n[dim]fix:[/] {escape(c.fix)}" if c.fix else "")
        table.add_row("[green]ok[/]" if c.ok else "[red]missing[/]", text)
    console.print(table)
