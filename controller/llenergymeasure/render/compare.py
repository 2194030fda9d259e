"""How a comparison reads on a terminal, like a paper's table: one row per metric (its unit in the name), one column
per entry under a short label made of what differs between them (``bs=2 · fp32``), each value to its CI's two
significant digits, and the difference from the first column marked ``n.s.`` when the cycles do not show it.
Columns never wrap mid-word: when they do not fit the terminal, the table continues below with the same rows."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llenergymeasure.results.compare import Entry, Value, differences, significant
from llenergymeasure.results.metrics import METRICS, QUALITY_STUDY_METRICS, SERVING_STUDY_METRICS, STUDY_METRICS
from llenergymeasure.results.points import short_labels

#: Row names, each with its unit (the catalogue's labels).
METRIC_LABELS = {m: METRICS[m].title for m in STUDY_METRICS}
NOT_SIGNIFICANT = "n.s."


def _decimals(x: float, digits: int) -> int:
    """Decimal places that give ``x`` ``digits`` significant digits (negative: round to tens, hundreds...)."""
    d = digits - 1 - math.floor(math.log10(abs(x)))
    if abs(round(x, d)) >= 10 ** (digits - d):  # 0.0996 -> 0.10: one place fewer
        d -= 1
    return d


def _fixed(x: float, d: int) -> str:
    return f"{round(x, d):.{max(d, 0)}f}"


def format_value(v: Value | None) -> str:
    """``mean ± ci`` to the CI's 2 significant digits (the mean to the same decimal place); a figure without a CI
    to 3 significant digits; ``null`` when not measured."""
    if v is None or v.mean is None:
        return "null"
    if v.ci95:
        d = _decimals(v.ci95, 2)
        return f"{_fixed(v.mean, d)} ± {_fixed(v.ci95, d)}"
    return "0" if v.mean == 0 else _fixed(v.mean, _decimals(v.mean, 3))


def shown_metrics(candidates: Sequence[str], values: Sequence[Mapping[str, Value]]) -> list[str]:
    """The figures a table gets a row or column for: those some entry has; a serving or quality figure only where
    some entry measured it (offline runs hold it as null, which would say nothing but "not a serving run")."""
    optional = SERVING_STUDY_METRICS + QUALITY_STUDY_METRICS
    return [m for m in candidates if any(m in v for v in values)
            and (m not in optional or any(v.get(m) is not None and v[m].mean is not None for v in values))]


def format_relative(d: float | None) -> str:
    """A relative difference in percent: whole percent from 10 % up, one decimal below."""
    if d is None:
        return ""
    p = d * 100
    return f"{p:+.0f} %" if abs(p) >= 9.95 else f"{p:+.1f} %"


def _cell(e: Entry, m: str, first: Value | None, diff: float | None, is_first: bool) -> str:
    v = e.values.get(m)
    text = format_value(v)
    if v is not None and v.mean is not None and e.n_ok and 0 < v.n < e.n_ok:
        text += f" (n={v.n})"
    if not is_first and diff is not None:
        mark = " " + NOT_SIGNIFICANT if first is not None and v is not None and significant(first, v) is False else ""
        text += f"\n{format_relative(diff)}{mark}"
    return text


def column_labels(entries: list[Entry]) -> list[str]:
    """``#1 bs=1 · fp32``: the column's number and what sets it apart (the number alone when nothing does)."""
    shorts = short_labels([e.params for e in entries])
    return [f"#{i} {s}".strip() for i, s in enumerate(shorts, 1)]


def _header(label: str, width: int) -> str:
    """The label on one line if it fits the column, else one part per line (breaks only between parts)."""
    if len(label) <= width:
        return label
    number, _, rest = label.partition(" ")
    return "\n".join([number, *rest.split(" · ")]) if rest else number


def _width(text: str) -> int:
    return max(len(line) for line in text.split("\n"))


def render_comparison(console: Console, entries: list[Entry]) -> None:
    diffs = differences(entries)
    metrics = shown_metrics(STUDY_METRICS, [e.values for e in entries])
    labels = column_labels(entries)
    keys = list(dict.fromkeys(k for e in entries for k in e.settings))
    varying = [k for k in keys if len({e.settings.get(k, "") for e in entries}) > 1]
    same = [k for k in keys if k not in varying]
    rows: list[tuple[str, list[str]]] = [(k, [e.settings.get(k, "") for e in entries]) for k in varying]
    rows += [(METRIC_LABELS.get(m, m), [_cell(e, m, entries[0].values.get(m), diffs[m][i], i == 0)
                                        for i, e in enumerate(entries)]) for m in metrics]
    cell_w = [max(_width(r[1][i]) for r in rows) for i in range(len(entries))]
    part_w = [max(len(p) for p in lb.replace(" · ", " ").split(" ")) for lb in labels]
    widths = [max(c, p) for c, p in zip(cell_w, part_w)]
    first_w = max(len(r[0]) for r in rows)

    # columns in chunks that fit the terminal (each column: its width + 2 padding + 1 separator)
    chunks: list[list[int]] = [[]]
    used = first_w + 3
    for i, w in enumerate(widths):
        if chunks[-1] and used + w + 3 > console.width:
            chunks.append([])
            used = first_w + 3
        chunks[-1].append(i)
        used += w + 3
    if any(v.ci95 for e in entries for v in e.values.values()):
        how = ("mean ± 95 % CI over cycles, each to the CI's 2 significant digits; % vs column #1 "
               f"({NOT_SIGNIFICANT}: not significant, Welch's t-test at 5 %)")
    else:
        how = "single runs (no spread, differences not tested), 3 significant digits; % vs column #1"
    console.print(f"[bold]compare[/]: {how}", highlight=False)
    for chunk in chunks:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=False)
        table.add_column("", style="bold", no_wrap=True, min_width=first_w)
        for i in chunk:
            table.add_column(escape(_header(labels[i], widths[i])), justify="right", no_wrap=True,
                             min_width=widths[i], max_width=widths[i])
        for name, cells in rows:
            table.add_row(escape(name), *(escape(cells[i]) for i in chunk))
        console.print(table)
    for label, e in zip(labels, entries):
        console.print(escape(f"{label.split(' ')[0]}  {e.title}"), highlight=False)
    simulated = [label.split(" ")[0] for label, e in zip(labels, entries) if e.simulated]
    if simulated:
        console.print(escape(f"SIMULATED GPU: {', '.join(simulated)} took their energy from lem's simulated NVML "
                             "device (LEM_SIMULATED_GPU), not a measurement"), highlight=False)
    if same:
        console.print(escape("every column: " + " · ".join(f"{k} {entries[0].settings[k]}" for k in same)),
                      highlight=False)
