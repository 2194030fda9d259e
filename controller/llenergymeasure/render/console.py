"""The rich console every command prints through."""

from __future__ import annotations

import os
import sys

from rich.console import Console


class _Console(Console):
    """A closed stdout (`lem run … | head`) goes quiet and raises BrokenPipeError, which stops a run gracefully
    (launchers/stream.py), instead of rich's default SystemExit(1), which would kill the runner unrecorded."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        raise BrokenPipeError("stdout closed")


def make_console() -> Console:
    """Rich console for stdout; off a terminal (CI logs, pipes) wide enough that tables do not wrap every cell."""
    console = _Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = _Console(highlight=False, width=160)
    return console
