"""``lem results list``: one plain, aligned line per experiment (greppable, never wrapped, at most 160 characters),
failed runs included, null energy shown as ``null`` rather than a blank that could read as zero. Newest first by
default; filters by backend, model and start time."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from llenergymeasure.errors import ConfigError
from llenergymeasure.results.columns import flatten
from llenergymeasure.results.discover import Experiment
from llenergymeasure.results.metrics import METRICS

HEADER = ("when (UTC)", "experiment", "status", "model", "backend", "settings", "tok/s", "J/token")
MAX_LINE = 160
SORTS = ("time", "name", "throughput", "energy")
#: the figure each figure sort orders by (best first, as the catalogue's ``better`` says; runs without it last)
_SORT_FIGURES = {"throughput": "output_tokens_per_second", "energy": "energy_per_token_j"}
#: Widest a column may grow (longer text ends in "…"); the status column takes what is left of MAX_LINE.
_MAX_WIDTH = {1: 40, 3: 20, 5: 24}
_EPOCH = datetime.min.replace(tzinfo=UTC)


def _num(value: float | None, spec: str) -> str:
    return "null" if value is None else format(value, spec)


def short_model(model: str | None) -> str:
    if not model:
        return "?"
    return model.rstrip("/").split("/")[-1].split(":")[-1]


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


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``2h``, ``3d``, ``30m`` (ago), or an ISO date/time (UTC unless it names a zone)."""
    now = now or datetime.now(UTC)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([mhdw])", text.strip())
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
        return now - timedelta(**{unit: float(m.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--since: '{text}' is neither a date/time (2025-01-31, 2025-01-31T12:00) nor an age "
                          "(30m, 2h, 3d, 1w)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def select(experiments: Sequence[Experiment], sort: str = "time", backend: str | None = None,
           model: str | None = None, since: datetime | None = None) -> list[Experiment]:
    """The experiments that pass the filters, in ``sort`` order: time (newest first), name, throughput (highest
    first) or energy (J/token, lowest first; runs without energy last)."""
    if sort not in SORTS:
        raise ConfigError(f"--sort: '{sort}' is not one of {', '.join(SORTS)}")
    out = [e for e in experiments
           if (backend is None or (e.config is not None and e.config.backend == backend))
           and (model is None or (e.config is not None and model.lower() in e.config.model.lower()))
           and (since is None or (e.when is not None and e.when >= since))]
    if sort == "time":
        return sorted(out, key=lambda e: e.when or _EPOCH, reverse=True)
    if sort == "name":
        return sorted(out, key=lambda e: (e.study or "", e.path.name))
    figure = METRICS[_SORT_FIGURES[sort]]
    sign = -1.0 if figure.better == "higher" else 1.0

    def key(e: Experiment) -> tuple[bool, float]:
        value = None if e.result is None else figure.read(e.result)
        return (value is None, 0.0 if value is None else sign * value)
    return sorted(out, key=key)


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
