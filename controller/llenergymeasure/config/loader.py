"""Read an experiment config from YAML or JSON, apply CLI overrides, validate it, and report the first problem as
one line naming the file and the field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from lem_runner.contract import ExperimentConfig
from pydantic import ValidationError

from llenergymeasure.errors import ConfigError

_MAX_CONFIG_BYTES = 1_000_000


def _field_path(loc: tuple) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    return ".".join(parts) or "(top level)"


def format_validation_error(source: str, exc: ValidationError) -> str:
    """'SOURCE: field.path: message' for the first error, plus a count of the others."""
    errors = exc.errors()
    first = errors[0]
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling)"
    line = f"{source}: {_field_path(first['loc'])}: {msg}"
    if len(errors) > 1:
        line += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return line


def parse_config(data: Any, source: str = "config") -> ExperimentConfig:
    """Validate a mapping as an ExperimentConfig, raising ConfigError with the field path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None
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


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return ``data`` with dotted-path overrides applied (``{"pytorch.batch_size": 8}``); None values are skipped."""
    merged = _deep_copy(data)
    for dotted, value in overrides.items():
        if value is None:
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
    if path:
        data = resolve_relative_paths(data, Path(path).resolve().parent)
    return parse_config(apply_overrides(data, overrides or {}), source)


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
    return data
