"""``lem results compare``: experiments and study points side by side, each metric with its relative difference
from the first column. A study folder contributes one column per point with mean ± 95 % CI over its cycles (from
study_summary.json), so a difference can be read against the spread that produced it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from lem_runner.contract import ERROR_FILE, RESULT_FILE, ExperimentResult
from lem_runner.contract.config import CarbonConfig
from lem_runner.contract.nvml import SIMULATED_SOURCE

from llenergymeasure.errors import ConfigError
from llenergymeasure.results.carbon import J_PER_KWH, with_carbon
from llenergymeasure.results.columns import batch_size
from llenergymeasure.results.discover import SUMMARY_FILE, experiment_from_arg, is_experiment_dir
from llenergymeasure.results.metrics import LEGACY_NAMES, METRICS, STUDY_METRICS
from llenergymeasure.results.points import label_params, short_model
from llenergymeasure.results.statistics import t_critical


@dataclass(frozen=True)
class Value:
    mean: float | None
    ci95: float | None = None
    n: int = 1
    std: float | None = None


@dataclass(frozen=True)
class Entry:
    """One column: an experiment, or one point of a study. ``params`` are what distinguishes it (a study point's
    swept parameters, an experiment's settings), from which the short column label is made."""

    title: str
    source: str
    settings: dict[str, str] = field(default_factory=dict)
    values: dict[str, Value] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    n_ok: int | None = None
    #: its energy came from lem's simulated NVML device (LEM_SIMULATED_GPU), not a measurement
    simulated: bool = False


def significant(a: Value, b: Value) -> bool | None:
    """Whether two means differ at the 5 % level by Welch's t-test (df rounded down: conservative); None when it
    cannot be tested (a single run, or a figure without its spread)."""
    if a.mean is None or b.mean is None or a.std is None or b.std is None or a.n < 2 or b.n < 2:
        return None
    va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
    if va + vb == 0:
        return a.mean != b.mean
    t = abs(a.mean - b.mean) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
    return t > t_critical(max(1, math.floor(df)))


def relative(base: float | None, value: float | None) -> float | None:
    """(value - base) / base; null when either is null or the base is 0."""
    if base is None or value is None or base == 0:
        return None
    return (value - base) / base


def _experiment_entry(path: Path, carbon: CarbonConfig | None = None) -> Entry:
    (e,) = with_carbon([experiment_from_arg(path)], carbon)
    if e.result is None:
        raise ConfigError(f"{path}: failed run, nothing to compare ({e.failure})")
    r = e.result
    c = r.config
    settings = {"model": short_model(c.model), "backend": c.backend,
                "batch": str(batch_size(e)),
                "dtype": str(r.backend_details.get("dtype", c.dtype)),
                "device": str(r.backend_details.get("device", c.device))}
    if c.carbon is not None:
        settings["carbon"] = f"{c.carbon.grid_intensity_g_per_kwh:g} g/kWh × PUE {c.carbon.pue:g}"
    params = {"model": settings["model"], "backend": c.backend, "batch_size": settings["batch"],
              "dtype": settings["dtype"], "device": settings["device"]}
    values = {m: Value(METRICS[m].read(r)) for m in STUDY_METRICS if m != "emissions_g" or c.carbon is not None}
    simulated = r.energy.source == SIMULATED_SOURCE
    return Entry(e.experiment_id, str(e.path), settings, values, params, simulated=simulated)


def _first_run(path: Path, data: dict, label: str) -> ExperimentResult | None:
    """A study point's first done run's result."""
    for run in data.get("experiments", []):
        if run.get("label") == label and run.get("status") == "done" and run.get("experiment_id"):
            try:
                return ExperimentResult.model_validate_json((path / run["experiment_id"] / RESULT_FILE).read_bytes())
            except (OSError, ValueError):
                return None
    return None


def _first_run_carbon(path: Path, data: dict, label: str) -> CarbonConfig | None:
    """The carbon settings a study point's runs recorded (its first done run's config)."""
    result = _first_run(path, data, label)
    return None if result is None else result.config.carbon


def _scaled(v: Value, k: float) -> Value:
    return Value(None if v.mean is None else v.mean * k, None if v.ci95 is None else v.ci95 * k, v.n,
                 None if v.std is None else v.std * k)


def _study_entries(path: Path, carbon: CarbonConfig | None = None) -> list[Entry]:
    source = path / SUMMARY_FILE
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
        points = data["aggregates"]
        entries = []
        for p in points:
            p = {LEGACY_NAMES.get(k, k): v for k, v in p.items()}  # a summary written by lem 0.1 reads the same
            values = {m: Value(p[m]["mean"], p[m]["ci95"], p[m]["n"], p[m].get("std")) for m in STUDY_METRICS
                      if isinstance(p.get(m), dict)}
            settings = {"backend": p.get("backend", "?"), "cycles ok": str(p.get("n_ok"))}
            point_carbon = carbon or _first_run_carbon(path, data, p["label"])
            if point_carbon is not None and "energy_j" in values:  # emissions are a fixed multiple of the energy
                values["emissions_g"] = _scaled(values["energy_j"], point_carbon.pue
                                                * point_carbon.grid_intensity_g_per_kwh / J_PER_KWH)
                settings["carbon"] = f"{point_carbon.grid_intensity_g_per_kwh:g} g/kWh × PUE {point_carbon.pue:g}"
            study = data.get("study", path.name)
            first = _first_run(path, data, p["label"])
            entries.append(Entry(f"{study}: {p['label']}", str(path), settings, values,
                                 {"study": study, **label_params(p["label"])}, p.get("n_ok"),
                                 simulated=first is not None and first.energy.source == SIMULATED_SOURCE))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{source}: not a readable study summary ({exc})") from None
    if not entries:
        raise ConfigError(f"{source}: no finished point to compare")
    return entries


def entries_for(path: Path, carbon: CarbonConfig | None = None) -> list[Entry]:
    """The column(s) one argument contributes: a study folder, an experiment folder, or a result.json.
    ``carbon`` (from --grid-intensity/--pue) replaces the carbon settings the runs recorded."""
    if path.is_dir() and (path / SUMMARY_FILE).is_file():
        return _study_entries(path, carbon)
    if path.is_dir() and not is_experiment_dir(path):
        raise ConfigError(f"{path}: neither an experiment folder ({RESULT_FILE}/{ERROR_FILE}) nor a study folder "
                          f"({SUMMARY_FILE})")
    return [_experiment_entry(path, carbon)]


def collect(paths: list[Path], carbon: CarbonConfig | None = None) -> list[Entry]:
    entries = [entry for p in paths for entry in entries_for(p, carbon)]
    if len(entries) < 2:
        raise ConfigError("compare: name at least two experiments, or a study with two or more points")
    return entries


def differences(entries: list[Entry]) -> dict[str, list[float | None]]:
    """Per metric, each entry's relative difference from the first entry's (mean) value."""
    base = entries[0]
    return {m: [relative(base.values.get(m, Value(None)).mean, e.values.get(m, Value(None)).mean) for e in entries]
            for m in STUDY_METRICS}
