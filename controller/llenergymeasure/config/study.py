"""The study file: ``base`` (experiment fields shared by all, inline or the path of an experiment file), ``sweep``
(independent axes over dotted paths), ``groups`` (dependent axes: alternatives whose fields are applied together,
such as a quantization method with its dtype) and ``experiments`` (explicit points merged over the base). The
points are the cartesian product of every sweep axis and every group, for each explicit experiment. Points that fail validation are
skipped with their reason; equivalent points (same measurement hash) run once. Each point runs ``n_cycles`` times,
in the order ``schedule`` gives."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lem_runner.contract import ExperimentConfig, measurement_config_hash
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llenergymeasure.config.checks import (
    BACKEND_SECTIONS,
    DEFAULT_BACKEND,
    engine_setting_problems,
    field_path_problem,
    prompts_file_problem,
    quality_setting_problems,
    resolve_batch_flag,
    split_backend_sections,
    task_file_problems,
)
from llenergymeasure.config.host_checks import model_problem
from llenergymeasure.config.loader import (
    apply_overrides,
    format_problems,
    format_validation_error,
    merge_mappings,
    parse_config,
    read_config_file,
    resolve_relative_paths,
)
from llenergymeasure.errors import ConfigError

_STUDY_KEYS = {"base", "sweep", "groups", "experiments"}


#: the orders a study's runs can go in (study/order.py schedules them)
Order = Literal["sequential", "interleave", "shuffle", "latin_square"]
ORDERS: tuple[str, ...] = ("sequential", "interleave", "shuffle", "latin_square")

#: the most points (combinations of sweep values and explicit experiments) one study may expand to
MAX_STUDY_POINTS = 10_000


class StudyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("study", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    base: dict[str, Any] | str = Field(
        default_factory=dict, description="experiment fields every point shares, or the path of an experiment file "
        "(relative to the study file)")
    sweep: dict[str, list[Any]] = Field(default_factory=dict, description="dotted path -> values")
    groups: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, description="dependent axes: group name -> alternatives, each a mapping of dotted "
        "paths set together (e.g. quantization with its dtype); crossed with every sweep axis and other group")
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
        "loaded engine (an engine session; serving runs: one server across rates); each cycle loads its engines afresh. "
        "false: every run starts a cold runner that loads its own engine")
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

    @field_validator("groups")
    @classmethod
    def _non_empty_groups(cls, v: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        for name, alternatives in v.items():
            if not alternatives:
                raise ValueError(f"group '{name}' has no alternatives")
            for i, alternative in enumerate(alternatives):
                if not alternative:
                    raise ValueError(f"group '{name}' alternative {i + 1} sets nothing")
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
    reference: int | None = None  # the point quality.reference names (its index in points), if any

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
    for key, value in resolve_batch_flag(study_backends(study, overrides), overrides).items():
        if value is None:
            continue
        flag = FLAGS.get(key, key)
        if key == "name":
            out.append(f"{flag}: a study's runs are named after the study ('name:' in the study file)")
        elif key in study.sweep:
            out.append(f"{flag}: no effect, the study sweeps {key}")
        elif any(all(key in alt for alt in alts) for alts in study.groups.values()):
            name = next(n for n, alts in study.groups.items() if all(key in alt for alt in alts))
            out.append(f"{flag}: no effect, every alternative of the study's group '{name}' sets {key}")
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


def study_backends(study: StudyConfig, overrides: dict[str, Any] | None = None) -> list[Any]:
    """The backends the study's points use (a ``backend`` axis, else each entry's or the base's)."""
    base = (overrides or {}).get("backend") or study.base.get("backend", DEFAULT_BACKEND)
    if "backend" in study.sweep:
        return list(study.sweep["backend"])
    grouped = [alt["backend"] for alts in study.groups.values() for alt in alts if "backend" in alt]
    return [e.get("backend", base) for e in study.experiments] + grouped or [base]


def is_study(data: dict[str, Any]) -> bool:
    return bool(_STUDY_KEYS & data.keys())


def load_study(path: Path, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """A study file, with relative paths in its base and points resolved against its folder and ``overrides``
    (dotted paths, as for an experiment) applied to its base."""
    return study_from_data(read_config_file(path), str(path), path.resolve().parent, overrides)


def study_from_data(data: dict[str, Any], source: str, folder: Path,
                    overrides: dict[str, Any] | None = None) -> StudyConfig:
    """``load_study`` over a mapping already read from ``source`` (or given to the API: ``folder`` the cwd)."""
    try:
        study = StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, StudyConfig)) from None
    return resolve_study_paths(study, folder, source, overrides)


def resolve_study_paths(study: StudyConfig, folder: Path, source: str,
                        overrides: dict[str, Any] | None = None) -> StudyConfig:
    """The study with ``base:`` read when it names an experiment file, relative paths in it and in the points
    resolved (against the file that holds them) and ``overrides`` applied to the base (``--batch-size`` on the
    batch knob of each backend the points use)."""
    base = study.base
    if isinstance(base, str):
        base = _read_base_file(folder / Path(base).expanduser(), base, source)
    else:
        base = resolve_relative_paths(base, folder)
    overrides = resolve_batch_flag(study_backends(study.model_copy(update={"base": base}), overrides),
                                   overrides or {})
    base = apply_overrides(base, overrides)
    points = [resolve_relative_paths(e, folder) for e in study.experiments]
    return study.model_copy(update={"base": base, "experiments": points})


def _read_base_file(path: Path, named: str, source: str) -> dict[str, Any]:
    """The experiment file ``base:`` names, its relative paths resolved against its own folder."""
    try:
        data = read_config_file(path)
    except ConfigError as exc:
        raise ConfigError(f"{source}: base: '{named}' cannot be used as the base ({exc})") from None
    if is_study(data):
        raise ConfigError(f"{source}: base: '{named}' is a study file (it has "
                          f"{', '.join(sorted(_STUDY_KEYS & data.keys()))}:); base names an experiment file")
    return resolve_relative_paths(data, path.resolve().parent)


def check_groups(study: StudyConfig, source: str) -> None:
    """Refuse a group that sets a field the config does not have, or one a sweep axis or another group also sets
    (which value would win is not obvious, so the study says it once)."""
    owner: dict[str, str] = {path: f"sweep axis '{path}'" for path in study.sweep}
    problems = []
    for name, alternatives in study.groups.items():
        for i, alternative in enumerate(alternatives, 1):
            for path in alternative:
                problem = field_path_problem(path)
                if problem:
                    problems.append(f"groups.{name}[{i}]: {problem}")
        for path in dict.fromkeys(p for alternative in alternatives for p in alternative):
            clash = next((who for other, who in owner.items() if _overlaps(path, other)), None)
            if clash is not None:
                problems.append(f"groups.{name}: sets '{path}', which the {clash} also sets (set it in one place)")
        for path in dict.fromkeys(p for alternative in alternatives for p in alternative):
            owner.setdefault(path, f"group '{name}'")
    if problems:
        raise ConfigError(format_problems(source, problems))


def _overlaps(a: str, b: str) -> bool:
    """One dotted path is the other or inside it (``vllm`` and ``vllm.quantization``)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _label(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "base"


def expand_study(study: StudyConfig, source: str = "study") -> Expansion:
    check_sweep_size(study, source)  # before itertools.product builds a huge sweep
    check_groups(study, source)
    if isinstance(study.base, str):
        raise ConfigError(f"{source}: base: '{study.base}' was not read (load the study with load_study)")
    starts = [dict(e) for e in study.experiments] or [{}]
    # every axis is a list of alternatives, each a mapping applied together: one field for a sweep axis
    axes = [[{path: value} for value in values] for path, values in study.sweep.items()]
    axes += list(study.groups.values())
    points: list[StudyPoint] = []
    skipped: list[str] = []
    invalid: list[str] = []
    seen: dict[str, str] = {}
    used: list[Any] = []
    for start in starts:
        for combo in itertools.product(*axes):
            swept = {path: value for alternative in combo for path, value in alternative.items()}
            overrides = {**{k: v for k, v in start.items() if not isinstance(v, dict)}, **swept}
            data = apply_overrides(merge_mappings(study.base, start), swept, keep_none=True)
            used.append(data.get("backend", DEFAULT_BACKEND))
            data, _ = split_backend_sections(data, {}, {})  # the base may hold a section per swept backend
            label = _label(overrides)
            try:
                config = parse_config(data, f"{source}: {label}")
                problems = ([p for p in [prompts_file_problem(config)] if p] + task_file_problems(config)
                            + quality_setting_problems(config, in_study=True) + engine_setting_problems(config)
                            + [p for p in [model_problem(config)] if p])
                if problems:
                    raise ConfigError(f"{source}: {label}: {'; '.join(problems)}")
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
    idle = [s for s in BACKEND_SECTIONS if s not in used and (s in study.base or any(s in e for e in starts))]
    if idle:
        raise ConfigError(f"{source}: " + "; ".join(
            f"{s}: settings for backend '{s}', but no point of the study uses it (they would be ignored; remove the "
            f"section or sweep backend: [..., {s}])" for s in idle))
    if not points:
        raise ConfigError(f"{source}: no valid experiment in the study ({'; '.join(skipped) or 'nothing to run'})")
    return Expansion(points, skipped, invalid, reference_point(points, source))


#: the fields that decide which prompts a run sends and how they are cut: equal for every point compared with a
#: reference, so request i is the same prompt everywhere
_SAME_PROMPTS = ("model", "prompts", "n_prompts", "seed", "max_input_tokens")


def reference_point(points: list[StudyPoint], source: str) -> int | None:
    """The index of the point ``quality.reference`` names (by label or name), or None when no point has one;
    ConfigError when it names no point, points name different ones, or a point's prompts differ from its."""
    named = {p.config.quality.reference for p in points if p.config.quality.reference}
    if not named:
        return None
    if len(named) > 1 or any(not p.config.quality.reference for p in points):
        raise ConfigError(f"{source}: quality.reference: every point names the same reference (seen: "
                          f"{', '.join(sorted(repr(n) for n in named))}; set it in base:)")
    (ref,) = named
    found = [i for i, p in enumerate(points) if ref in (p.label, p.config.name)]
    if not found:
        labels = ", ".join(repr(p.label) for p in points[:6]) + (", ..." if len(points) > 6 else "")
        raise ConfigError(f"{source}: quality.reference: no point of the study is '{ref}' (its points: {labels})")
    i = found[0]
    want = {k: getattr(points[i].config, k) for k in _SAME_PROMPTS}
    for p in points:
        differ = [k for k in _SAME_PROMPTS if getattr(p.config, k) != want[k]]
        if differ:
            raise ConfigError(f"{source}: quality.reference: point '{p.label}' sends other prompts than the reference "
                              f"'{ref}' (it sets {', '.join(differ)} otherwise); compared points share the prompts")
    return i


def check_sweep_size(study, source: str) -> None:
    """Refuse a study whose sweep would expand to more than MAX_STUDY_POINTS points (before expanding it)."""
    sizes = [len(values) for values in [*study.sweep.values(), *study.groups.values()]]
    n = max(1, len(study.experiments)) * math.prod(sizes)
    if n > MAX_STUDY_POINTS:
        axes = " x ".join(str(size) for size in sizes) or "1"
        raise ConfigError(f"{source}: sweep: {axes} values over {max(1, len(study.experiments))} experiment(s) make "
                          f"{n:.3g} points; a study may have at most {MAX_STUDY_POINTS:,}")
