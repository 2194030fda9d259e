"""Tables that fit the terminal without cutting what a user must read whole: cells never wrap mid-word (each column
is as wide as its widest cell), headers break only between words, and when the columns do not fit, the table
continues below with the same key columns (a point's label, a run's name) and the rest of the figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

#: a label longer than this is shown as #n in a table too wide for the terminal, and listed whole below it
LABEL_KEEP = 16
#: what one column costs beside its text in a SIMPLE_HEAD table without edges: padding on both sides and the
#: (blank) separator; the first column has none before it
COLUMN_COST = 3


@dataclass(frozen=True)
class Column:
    header: str  # plain text; broken between words to fit the column
    cells: Sequence[str]  # rich markup, already escaped
    right: bool = False


def cell_width(markup: str) -> int:
    return max((Text.from_markup(line).cell_len for line in markup.split("\n")), default=0)


def header_lines(header: str, width: int) -> str:
    """The header broken between words into lines no wider than ``width`` (a word wider than it gets a line)."""
    lines: list[str] = []
    for word in header.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def column_width(col: Column) -> int:
    """As wide as its widest cell, or its longest header word, whichever is wider."""
    return max([cell_width(c) for c in col.cells] + [max(len(w) for w in col.header.split(" ") or [""])])


def natural_width(columns: Sequence[Column]) -> int:
    """The width of one table holding every column, each at its widest cell (headers broken between words)."""
    return sum(column_width(c) + COLUMN_COST for c in columns)


def fitted_tables(width: int, keys: Sequence[Column], figures: Sequence[Column], title: str | None = None
                  ) -> list[Table]:
    """The key columns and as many figure columns as fit ``width``, then the same keys with the next figures, and so
    on (a single figure wider than the terminal still gets its own table: it is never cut)."""
    widths = [column_width(c) for c in figures]
    used0 = sum(column_width(c) + COLUMN_COST for c in keys) - COLUMN_COST  # no separator before the first
    chunks: list[list[int]] = [[]]
    used = used0
    for i, w in enumerate(widths):
        if chunks[-1] and used + w + COLUMN_COST > width:
            chunks.append([])
            used = used0
        chunks[-1].append(i)
        used += w + COLUMN_COST
    tables = []
    for n, chunk in enumerate(chunks):
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, title_justify="left",
                      title_style="bold", title=(title if n == 0 else None))
        shown = [*keys, *(figures[i] for i in chunk)]
        for col in shown:
            w = column_width(col)
            table.add_column(header_lines(col.header, w), justify="right" if col.right else "left", no_wrap=True,
                             min_width=w, max_width=w)
        for r in range(len(keys[0].cells) if keys else 0):
            table.add_row(*(col.cells[r] for col in shown))
        tables.append(table)
    return tables


def numbered(labels: Sequence[str]) -> list[str]:
    """``#1``, ``#2`` …: the key a narrow table shows in place of long labels (listed in full below it)."""
    return [f"#{i}" for i in range(1, len(labels) + 1)]


def print_keyed(console: Console, title: str, labels: Sequence[str], keys: list[Column], figures: list[Column],
                key_name: str = "point") -> None:
    """A table of ``labels`` (plain text) with key and figure columns, fitted to the terminal: long labels become
    #1, #2 … (listed whole below) when the table would not fit, and figures continue in a second table."""
    full = Column(key_name, [escape(lb) for lb in labels])
    numbered_key = natural_width([full, *keys, *figures]) > console.width and max(map(len, labels), default=0) > LABEL_KEEP
    first = Column("#", numbered(labels)) if numbered_key else full
    for table in fitted_tables(console.width, [first, *keys], figures, title):
        console.print(table)
    if numbered_key:
        for n, label in zip(numbered(labels), labels):
            console.print(f"  {n}  {escape(label)}", highlight=False, overflow="fold")


class Fitted:
    """A renderable that lays ``fitted_tables`` out at the width it is printed at (for views built before the
    console is known), with an optional caption line under the last table."""

    def __init__(self, title: str, keys: Sequence[Column], figures: Sequence[Column], caption: str = "") -> None:
        self.title, self.keys, self.figures, self.caption = title, keys, figures, caption

    def __rich_console__(self, console, options):
        yield from fitted_tables(options.max_width, self.keys, self.figures, self.title)
        if self.caption:
            yield Text.from_markup(self.caption)
