"""``lem results list``: one plain, aligned line per experiment (greppable, never wrapped), failed runs included,
null energy shown as ``null`` rather than a blank that could read as zero."""

from __future__ import annotations

from collections.abc import Sequence

from llenergymeasure.results.columns import flatten
from llenergymeasure.results.discover import Experiment

HEADER = ("when (UTC)", "experiment", "status", "model", "backend", "settings", "tok/s", "J/token")


def _num(value: float | None, spec: str) -> str:
    return "null" if value is None else format(value, spec)


def short_model(model: str | None) -> str:
    if not model:
        return "?"
    return model.rstrip("/").split("/")[-1].split(":")[-1]


def list_row(e: Experiment) -> tuple[str, ...]:
    row = flatten(e)
    when = e.when.strftime("%Y-%m-%d %H:%M:%S") if e.when else "?"
    name = f"{e.study}/{e.path.name}" if e.study else e.path.name
    settings = " ".join(f"{k}={row[c]}" for k, c in (("batch", "batch_size"), ("dtype", "dtype"), ("device", "device"))
                        if row[c] is not None)
    status = e.status if e.ok else f"{e.status}: {e.failure}"
    return (when, name, status, short_model(row["model"]), row["backend"] or "?", settings or "?",
            _num(row["tokens_per_second"], ".1f") if e.ok else "-",
            _num(row["energy_per_token_j"], ".4g") if e.ok else "-")


def list_lines(experiments: Sequence[Experiment]) -> list[str]:
    """A header and one line per experiment, columns padded to align (the failure reason goes last)."""
    rows = [HEADER, *(list_row(e) for e in experiments)]
    order = (0, 1, 3, 4, 5, 6, 7, 2)  # status last: a failure's reason can be long
    widths = {i: max(len(r[i]) for r in rows) for i in order}
    right = {6, 7}
    return ["  ".join(r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i]) for i in order).rstrip()
            for r in rows]
