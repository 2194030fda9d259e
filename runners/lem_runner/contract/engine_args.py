"""Pass-through engine arguments (a backend section's mapping of extra engine arguments, e.g. ``vllm.engine_args``):
the rules every side applies the same way.

Two checks, one message shape. A key that lem declares as its own field is refused by the config model itself (one
name per concept: each backend's config.py holds its ``OWNED_*`` tables, mapping each such engine argument to the
lem field that sets it, and hands them to :func:`checked_pass_through`). A key the engine
does not know is refused against the engine's own argument definitions, read where the engine is installed (the
runner, before the model loads; ``lem config validate`` too, where the host has that engine): ``unknown_keys``
turns the names found there into one line per key, and the runner raises ``EngineArgumentError``, which it reports
as a config error (error.json phase ``config``, exit 2).

Each backend's spec names its ``engine_check`` (``module:function``, ``f(config, model_path, in_runner) -> list of
problems``): the same function runs in the runner before loading and, where the engine is installed on the host, in
``lem config validate`` / ``lem run`` before anything starts.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

#: the error-file phase of a config the engine refused before loading (the controller maps it to exit 2)
CONFIG_PHASE = "config"


class EngineArgumentError(ValueError):
    """A setting the engine refused (unknown pass-through key, missing library) before anything loaded."""


def owned_key_problems(path: str, given: Mapping[str, Any], owned: Mapping[str, str]) -> list[str]:
    """One line per pass-through key that duplicates a declared field (use the field: one name per concept)."""
    out = []
    for key in given:
        if key in owned:
            field = owned[key]
            how = f"lem sets it {field[1:-1]}" if field.startswith("(") else f"set '{field}' instead"
            out.append(f"{path}.{key}: not a pass-through key; {how}")
    return out


def json_value_problems(path: str, given: Mapping[str, Any]) -> list[str]:
    """Pass-through values travel in request.json and into the result: they must be JSON (a YAML/JSON config's
    values always are; a Python caller could hand anything)."""
    out = []
    for key, value in given.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            out.append(f"{path}.{key}: value must be JSON (numbers, strings, booleans, lists, mappings)")
    return out


def checked_pass_through(path: str, given: dict[str, Any], owned: Mapping[str, str]) -> dict[str, Any]:
    """A section's pass-through mapping, as its field validator returns it: ValueError naming each key that
    duplicates a declared field or holds a non-JSON value (the message relative to ``path``, as pydantic prefixes
    the field's location)."""
    problems = owned_key_problems(path, given, owned) + json_value_problems(path, given)
    if problems:
        raise ValueError("; ".join(p.removeprefix(f"{path}.") for p in problems))
    return given


def unknown_keys(path: str, given: Iterable[str], known: Iterable[str], what: str) -> list[str]:
    """'PATH.KEY: not an argument of WHAT; did you mean ...' for every key the engine does not define."""
    known = sorted(set(known))
    out = []
    for key in given:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        out.append(f"{path}.{key}: not an argument of {what}{hint}")
    return out


def jsonable(value: Any) -> Any:
    """A value fit for result.json: scalars as they are, containers element-wise, anything else as its string."""
    if isinstance(value, Enum):
        return jsonable(value.value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        try:
            return jsonable(to_dict())
        except Exception:  # a config object whose to_dict needs more than itself
            pass
    return str(getattr(value, "value", value))
