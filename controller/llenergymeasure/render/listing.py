"""``lem results list`` on screen: one plain, aligned line per experiment (greppable, never wrapped, at most 160
characters), failed runs included, null energy shown as ``null`` rather than a blank that could read as zero."""

from __future__ import annotations

import os
from collections.abc import Sequence

from llenergymeasure.results.columns import flatten
from llenergymeasure.results.discover import Experiment
from llenergymeasure.results.points import short_model

HEADER = ("when (UTC)", "experiment", "status", "model", "backend", "settings", "tok/s", "J/token")
MAX_LINE = 160
#: Widest a column may grow (longer text ends in "…"); the status column takes what is left of MAX_LINE.
_MAX_WIDTH = {1: 40, 3: 20, 5: 24}


def _num(value: float | None, spec: str) -> str:
    return "null" if value is None else format(value, spec)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def list_row(e: Experiment) -> tuple[str, ...]:
    row = flatten(e)
    when = e.when.strftime("%Y-%m-%d %H:%M:%S") if e.when else "?"
    name = f"{e.study}/{e.path.name}" if e.study else e.path.name
    settings = " ".join(f"{k}{row[c]}" for k, c in (("bs=", "batch_size"), ("", "dtype"), ("", "device"))
                        if row[c] is not None)  # bs=2 bfloat16 cpu: short, so the failure reason fits the line
    # the folder is in the experiment column: a failure naming a file in it names just the file
    status = e.status if e.ok else f"{e.status}: {(e.failure or '').replace(str(e.path) + os.sep, '')}"
    return (when, name, status, short_model(row["model"]), row["backend"] or "?", settings or "?",
            _num(row["output_tokens_per_second"], ".1f") if e.ok else "-",
            _num(row["energy_per_token_j"], ".4g") if e.ok else "-")


def list_lines(experiments: Sequence[Experiment]) -> list[str]:
    """A header and one line per experiment, columns padded to align (the failure reason goes last, cut so that no
    line is longer than MAX_LINE)."""
    rows = [HEADER, *(list_row(e) for e in experiments)]
    rows = [tuple(_clip(v, _MAX_WIDTH.get(i, len(v))) for i, v in enumerate(r)) for r in rows]
    order = (0, 1, 3, 4, 5, 6, 7, 2)  # status last: a failure's reason can be long
    widths = {i: max(len(r[i]) for r in rows) for i in order}
    right = {6, 7}
    return [_clip("  ".join(r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i]) for i in order).rstrip(),
                  MAX_LINE) for r in rows]
