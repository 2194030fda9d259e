"""``lem results compare``: experiments and study points side by side, each metric with its relative difference
from the first column. A study folder contributes one column per point with mean ± 95 % CI over its cycles (from
study_summary.json), so a difference can be read against the spread that produced it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lem_runner.contract import ERROR_FILE, RESULT_FILE

from llenergymeasure.errors import ConfigError
from llenergymeasure.results.columns import batch_size
from llenergymeasure.results.discover import SUMMARY_FILE, experiment_from_arg, is_experiment_dir
from llenergymeasure.study.aggregate import METRICS


@dataclass(frozen=True)
class Value:
    mean: float | None
    ci95: float | None = None
    n: int = 1


@dataclass(frozen=True)
class Entry:
    """One column: an experiment, or one point of a study."""

    title: str
    source: str
    settings: dict[str, str] = field(default_factory=dict)
    values: dict[str, Value] = field(default_factory=dict)


def relative(base: float | None, value: float | None) -> float | None:
    """(value - base) / base; null when either is null or the base is 0."""
    if base is None or value is None or base == 0:
        return None
    return (value - base) / base


def _experiment_entry(path: Path) -> Entry:
    e = experiment_from_arg(path)
    if e.result is None:
        raise ConfigError(f"{path}: failed run, nothing to compare ({e.failure})")
    r = e.result
    c = r.config
    settings = {"model": c.model, "backend": c.backend, "batch": str(r.backend_details.get("batch_size",
                batch_size(c))), "dtype": str(r.backend_details.get("dtype", c.dtype)),
                "device": str(r.backend_details.get("device", c.device))}
    return Entry(e.experiment_id, str(e.path), settings, {m: Value(read(r)) for m, read in METRICS.items()})


def _study_entries(path: Path) -> list[Entry]:
    source = path / SUMMARY_FILE
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
        points = data["aggregates"]
        entries = []
        for p in points:
            values = {m: Value(p[m]["mean"], p[m]["ci95"], p[m]["n"]) for m in METRICS if isinstance(p.get(m), dict)}
            entries.append(Entry(f"{data.get('study', path.name)}: {p['label']}", str(path),
                                 {"backend": p.get("backend", "?"), "cycles ok": str(p.get("n_ok"))}, values))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{source}: not a readable study summary ({exc})") from None
    if not entries:
        raise ConfigError(f"{source}: no finished point to compare")
    return entries


def entries_for(path: Path) -> list[Entry]:
    """The column(s) one argument contributes: a study folder, an experiment folder, or a result.json."""
    if path.is_dir() and (path / SUMMARY_FILE).is_file():
        return _study_entries(path)
    if path.is_dir() and not is_experiment_dir(path):
        raise ConfigError(f"{path}: neither an experiment folder ({RESULT_FILE}/{ERROR_FILE}) nor a study folder "
                          f"({SUMMARY_FILE})")
    return [_experiment_entry(path)]


def collect(paths: list[Path]) -> list[Entry]:
    entries = [entry for p in paths for entry in entries_for(p)]
    if len(entries) < 2:
        raise ConfigError("compare: name at least two experiments, or a study with two or more points")
    return entries


def differences(entries: list[Entry]) -> dict[str, list[float | None]]:
    """Per metric, each entry's relative difference from the first entry's (mean) value."""
    base = entries[0]
    return {m: [relative(base.values.get(m, Value(None)).mean, e.values.get(m, Value(None)).mean) for e in entries]
            for m in METRICS}
