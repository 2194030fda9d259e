"""How a comparison reads on a terminal: one row per metric, one column per entry, ``value (±CI) [+x.x %]``."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llenergymeasure.results.compare import Entry, Value, differences
from llenergymeasure.study.aggregate import METRICS


def format_value(v: Value | None) -> str:
    if v is None or v.mean is None:
        return "null"
    text = f"{v.mean:.4g}"
    if v.ci95 is not None:
        text += f" ± {v.ci95:.3g}"
    if v.n != 1:
        text += f" (n={v.n})"
    return text


def format_relative(d: float | None) -> str:
    return "" if d is None else f"{d * 100:+.1f} %"


def render_comparison(console: Console, entries: list[Entry]) -> None:
    diffs = differences(entries)
    table = Table(title="compare (relative difference vs the first column; ± is the 95 % CI over cycles)",
                  title_justify="left")
    table.add_column("metric", style="bold", no_wrap=True)
    for e in entries:
        table.add_column(escape(e.title), justify="right", overflow="fold")
    keys = list(dict.fromkeys(k for e in entries for k in e.settings))
    for k in keys:
        table.add_row(k, *(escape(e.settings.get(k, "")) for e in entries))
    table.add_section()
    for m in METRICS:
        cells = []
        for i, e in enumerate(entries):
            cell = format_value(e.values.get(m))
            if i and diffs[m][i] is not None:
                cell += f" [{format_relative(diffs[m][i])}]"
            cells.append(escape(cell))
        table.add_row(m, *cells)
    console.print(table)
