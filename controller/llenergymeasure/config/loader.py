"""Read an experiment config from YAML or JSON, apply CLI overrides, validate it, and report every problem in one
line naming the file and each field path (config/checks.py holds the checks beyond the models' own rules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from lem_runner.contract import ExperimentConfig
from pydantic import BaseModel, ValidationError

from llenergymeasure.config.checks import (
    engine_setting_problems,
    experiment_backend,
    prompts_file_problem,
    quality_setting_problems,
    resolve_batch_flag,
    split_backend_sections,
    task_file_problems,
    validation_problems,
)
from llenergymeasure.errors import ConfigError

_MAX_CONFIG_BYTES = 1_000_000


def format_problems(source: str, problems: list[str]) -> str:
    """'SOURCE: problem' for one, 'SOURCE: N problems: a; b; c' for several: every one, none summarised away."""
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return f"{source}: {len(problems)} problems: " + "; ".join(problems)


def format_validation_error(source: str, exc: ValidationError, root: type[BaseModel] = ExperimentConfig) -> str:
    """Every error pydantic found, each as 'field.path: message' (with "did you mean" for a misspelt key)."""
    return format_problems(source, validation_problems(exc, root))


def parse_config(data: Any, source: str = "config", earlier: list[str] | None = None) -> ExperimentConfig:
    """Validate a mapping as an ExperimentConfig, raising ConfigError with the field path (after ``earlier``
    problems found in the same input, so all are reported at once)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_problems(source, [*(earlier or []), *validation_problems(exc)])) from None
    from llenergymeasure.serving import serving_workload

    serving_workload(config, source)  # a serving trace or dataset file that cannot be used is a config error too
    return config


def read_config_file(path: Path) -> dict[str, Any]:
    """The raw mapping in a YAML/JSON file; ConfigError for anything unreadable."""
    try:
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory, not a config file")
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: config file is larger than 1 MB")
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"{path}: config is nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any], keep_none: bool = False) -> dict[str, Any]:
    """Return ``data`` with dotted-path overrides applied (``{"pytorch.batch_size": 8}``). None values are skipped
    (a flag not given), unless ``keep_none``: a study's ``null`` sets the field to None."""
    merged = _deep_copy(data)
    for dotted, value in overrides.items():
        if value is None and not keep_none:
            continue
        node = merged
        *parents, leaf = dotted.split(".")
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[leaf] = value
    return merged


def merge_mappings(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base``: nested mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge_mappings(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _deep_copy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Load ``path`` (or the defaults when None), apply overrides, validate. Relative file paths in the config
    (a local model folder, a prompts file) are resolved against the config file's folder."""
    source = str(path) if path else "command line"
    data = read_config_file(Path(path)) if path else {}
    return config_from_data(data, source, Path(path).resolve().parent if path else None, overrides)


def config_from_data(data: dict[str, Any], source: str, folder: Path | None,
                     overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """``load_config`` over a mapping already read from ``source`` (relative paths resolved against ``folder``)."""
    if folder is not None:
        data = resolve_relative_paths(data, folder)
    overrides = resolve_batch_flag([experiment_backend(data, overrides or {})], overrides or {})
    merged, problems = split_backend_sections(apply_overrides(data, overrides), data, overrides)
    config = parse_config(merged, source, earlier=problems)
    problems += [p for p in [prompts_file_problem(config)] if p]
    problems += task_file_problems(config)
    problems += quality_setting_problems(config, in_study=False)
    problems += engine_setting_problems(config)
    if problems:
        raise ConfigError(format_problems(source, problems))
    return config


def resolve_relative_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    data = _deep_copy(data)
    model = data.get("model")
    if isinstance(model, str) and model.startswith(("./", "../")):
        data["model"] = str((base / model).resolve())
    prompts = data.get("prompts")
    if isinstance(prompts, dict) and isinstance(prompts.get("path"), str):
        path = Path(prompts["path"]).expanduser()
        prompts["path"] = str(path if path.is_absolute() else (base / path).resolve())
    serving = data.get("serving")
    if isinstance(serving, dict):
        holders = [(serving, "trace")] + ([(serving["dataset"], "path")] if isinstance(serving.get("dataset"), dict)
                                          else [])
        for holder, key in holders:
            if isinstance(holder.get(key), str):
                path = Path(holder[key]).expanduser()
                holder[key] = str(path if path.is_absolute() else (base / path).resolve())
    task = data.get("quality", {}).get("task") if isinstance(data.get("quality"), dict) else None
    if isinstance(task, dict) and isinstance(task.get("path"), str):
        path = Path(task["path"]).expanduser()
        task["path"] = str(path if path.is_absolute() else (base / path).resolve())
    return data
