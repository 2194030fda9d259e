"""The study file: ``base`` (experiment fields shared by all), ``sweep`` (axes over dotted paths whose cartesian
product is taken) and ``experiments`` (explicit points merged over the base). Points that fail validation are
skipped with their reason; equivalent points (same measurement hash) run once. Each point runs ``n_cycles`` times,
in the order ``schedule`` gives."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lem_runner.contract import ExperimentConfig, measurement_config_hash
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llenergymeasure.config.checks import prompts_file_problem
from llenergymeasure.config.loader import (
    apply_overrides,
    format_validation_error,
    merge_mappings,
    parse_config,
    read_config_file,
    resolve_relative_paths,
)
from llenergymeasure.errors import ConfigError
from llenergymeasure.safety import check_sweep_size
from llenergymeasure.study.order import Order

_STUDY_KEYS = {"base", "sweep", "experiments"}

class StudyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("study", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    base: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, list[Any]] = Field(default_factory=dict, description="dotted path -> values")
    experiments: list[dict[str, Any]] = Field(default_factory=list)
    n_cycles: int = Field(1, ge=1, le=1000, description="times each point runs")
    order: Order = Field(
        "interleave", description="sequential: all cycles of a point, then the next; interleave: cycle 1 of every "
        "point, then cycle 2...; shuffle: interleave with the points shuffled (by seed) within each cycle; latin_square: each cycle a row of a "
        "Williams design (balanced position and carry-over)"
    )
    seed: int = Field(0, description="seed of the shuffle order")
    engine_reuse: bool = Field(
        True, description="true: within a cycle, runs whose points share an engine (lem_runner.contract.engine: same "
        "model, backend, dtype, devices, engine arguments, image) go together, in the order's sequence, and share one "
        "loaded engine (an engine session); each cycle loads its engines afresh. false: every run starts a cold runner "
        "that loads its own engine")
    gap_seconds: float = Field(0, ge=0, le=3600, description="pause between runs (thermal settling)")
    experiment_timeout_s: float | None = Field(
        None, gt=0, description="wall-clock limit of one run; the runner is killed and the run marked failed"
    )
    max_consecutive_failures: int = Field(
        3, ge=0, description="stop the study after this many failed runs in a row (0: never); it stays resumable"
    )

    @field_validator("sweep")
    @classmethod
    def _non_empty_axes(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for path, values in v.items():
            if not values:
                raise ValueError(f"axis '{path}' has no values")
        return v


@dataclass(frozen=True)
class StudyPoint:
    label: str
    config: ExperimentConfig


@dataclass(frozen=True)
class Expansion:
    points: list[StudyPoint]
    skipped: list[str]  # "label: reason" for each point that failed validation or duplicated another
    invalid: list[str] = field(default_factory=list)  # the skipped points that failed validation (not duplicates)

    def refuse_invalid(self, source: str) -> None:
        """ConfigError listing every invalid point: a study that would silently run only part of its sweep is
        refused (``--allow-skipped`` runs the valid points anyway)."""
        if self.invalid:
            raise ConfigError(f"{source}: {len(self.invalid)} of {len(self.invalid) + len(self.points)} point(s) are "
                              f"invalid (--allow-skipped runs the others): " + "; ".join(
                                  p.removeprefix(f"{source}: ") for p in self.invalid))


def unused_flags(study: StudyConfig, overrides: dict[str, Any]) -> list[str]:
    """Flags that would change nothing in this study: ``--name`` (runs are named after the study), or a field every
    point sets itself (a sweep axis, or set in each of ``experiments``)."""
    from llenergymeasure.config.checks import FLAGS

    out = []
    for key, value in overrides.items():
        if value is None:
            continue
        flag = FLAGS.get(key, key)
        if key == "name":
            out.append(f"{flag}: a study's runs are named after the study ('name:' in the study file)")
        elif key in study.sweep:
            out.append(f"{flag}: no effect, the study sweeps {key}")
        elif study.experiments and all(_sets(e, key) for e in study.experiments):
            out.append(f"{flag}: no effect, every entry of experiments: sets {key}")
    return out


def _sets(data: dict[str, Any], dotted: str) -> bool:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def is_study(data: dict[str, Any]) -> bool:
    return bool(_STUDY_KEYS & data.keys())


def load_study(path: Path, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """A study file, with relative paths in its base and points resolved against its folder and ``overrides``
    (dotted paths, as for an experiment) applied to its base."""
    data = read_config_file(path)
    try:
        study = StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc, StudyConfig)) from None
    folder = path.resolve().parent
    base = apply_overrides(resolve_relative_paths(study.base, folder), overrides or {})
    points = [resolve_relative_paths(e, folder) for e in study.experiments]
    return study.model_copy(update={"base": base, "experiments": points})


def _label(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "base"


def expand_study(study: StudyConfig, source: str = "study") -> Expansion:
    check_sweep_size(study, source)  # before itertools.product builds a huge sweep
    starts = [dict(e) for e in study.experiments] or [{}]
    axes = list(study.sweep.items())
    points: list[StudyPoint] = []
    skipped: list[str] = []
    invalid: list[str] = []
    seen: dict[str, str] = {}
    for start in starts:
        for combo in itertools.product(*(values for _, values in axes)):
            swept = {path: value for (path, _), value in zip(axes, combo)}
            overrides = {**{k: v for k, v in start.items() if not isinstance(v, dict)}, **swept}
            data = apply_overrides(merge_mappings(study.base, start), swept)
            label = _label(overrides)
            try:
                config = parse_config(data, f"{source}: {label}")
                problem = prompts_file_problem(config)
                if problem:
                    raise ConfigError(f"{source}: {label}: {problem}")
            except ConfigError as exc:
                skipped.append(str(exc))
                invalid.append(str(exc))
                continue
            digest = measurement_config_hash(config)
            if digest in seen:
                skipped.append(f"{source}: {label}: same measurement as {seen[digest]}, run once")
                continue
            seen[digest] = label
            if config.name is None:
                config = config.model_copy(update={"name": f"{study.name}-{len(points) + 1:03d}-{config.backend}"})
            points.append(StudyPoint(label, config))
    if not points:
        raise ConfigError(f"{source}: no valid experiment in the study ({'; '.join(skipped) or 'nothing to run'})")
    return Expansion(points, skipped, invalid)

