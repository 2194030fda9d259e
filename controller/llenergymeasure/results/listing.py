"""Which experiments ``lem results list`` shows and in what order: filters by backend, model and start time;
newest first by default (render/listing.py prints them)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from llenergymeasure.errors import ConfigError
from llenergymeasure.results.discover import Experiment
from llenergymeasure.results.metrics import METRICS

SORTS = ("time", "name", "throughput", "energy")
#: the figure each figure sort orders by (best first, as the catalogue's ``better`` says; runs without it last)
_SORT_FIGURES = {"throughput": "output_tokens_per_second", "energy": "energy_per_token_j"}
_EPOCH = datetime.min.replace(tzinfo=UTC)


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
