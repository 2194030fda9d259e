"""``lem results list`` on screen: one plain, aligned line per experiment (greppable, at most the terminal's width
and never more than 160 characters), failed runs included, null energy shown as ``null`` rather than a blank that
could read as zero. Run names and failure reasons are never cut (a user copies them): on a narrow terminal the
settings, model, backend and time columns are dropped first, and a reason that still does not fit continues on
indented lines below its run."""

from __future__ import annotations

import os
import textwrap
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


#: the columns given up, in this order, when the line does not fit (name, figures and status always stay)
_DROP_ORDER = (5, 3, 4, 0)
_INDENT = "    "


def _line(r: tuple[str, ...], cols: Sequence[int], widths: dict[int, int]) -> str:
    return "  ".join(r[i].rjust(widths[i]) if i in (6, 7) else r[i].ljust(widths[i]) for i in cols).rstrip()


def list_lines(experiments: Sequence[Experiment], width: int = MAX_LINE) -> list[str]:
    """A header and one line per experiment, columns padded to align, no line longer than ``width`` (at most
    MAX_LINE): the status goes last; a failure reason too long for the line continues on indented lines."""
    width = min(width, MAX_LINE)
    rows = [HEADER, *(list_row(e) for e in experiments)]
    rows = [tuple(v if i in (1, 2) else _clip(v, _MAX_WIDTH.get(i, len(v))) for i, v in enumerate(r)) for r in rows]
    cols = [0, 1, 3, 4, 5, 6, 7, 2]  # status last: a failure's reason can be long
    widths = {i: max(len(r[i]) for r in rows) for i in cols}
    status_word = max(len(r[2].split(":", 1)[0]) for r in rows)
    for drop in _DROP_ORDER:  # drop columns until every line fits with at least the status word ("failed")
        if sum(widths[i] + 2 for i in cols if i != 2) + status_word <= width:
            break
        cols.remove(drop)
    out = []
    for r in rows:
        line = _line(r, cols, widths)
        if len(line) <= width:
            out.append(line)
            continue
        head, _, reason = r[2].partition(": ")
        out.append(_line((*r[:2], head + ":", *r[3:]), cols, widths))
        out += textwrap.wrap(reason, width, initial_indent=_INDENT, subsequent_indent=_INDENT,
                             break_on_hyphens=False)  # a word is split only when no line could hold it
    return out
