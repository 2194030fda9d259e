"""What `lem run` would refuse beyond the models' own rules, checked the same way by `lem config validate`: every
problem at once, each naming its field (or flag) and file.

- pydantic errors, all of them, with "did you mean" for a misspelt key;
- a JSONL prompts file that is missing, unreadable, or lacks the configured ``field`` (which would otherwise fail
  only after the model loaded, reading as a model problem);
- a section for a backend the run does not use (``--backend vllm --batch-size 4``; a ``vllm:`` section on a pytorch
  run): its settings would be silently ignored.
"""

from __future__ import annotations

import difflib
import json
import re
import typing
from pathlib import Path
from typing import Any

from lem_runner.contract import ExperimentConfig
from pydantic import BaseModel, ValidationError

#: backend name -> its section in ExperimentConfig (the section is named after the backend)
BACKEND_SECTIONS = ("pytorch", "vllm", "tensorrt")
#: the `lem run` flag that sets each dotted field, to name the flag in a message
FLAGS = {"model": "--model", "backend": "--backend", "pytorch.batch_size": "--batch-size",
         "n_prompts": "--n-prompts", "max_output_tokens": "--max-output-tokens", "dtype": "--dtype",
         "device": "--device", "name": "--name"}


#: the tag pydantic puts in an error's location for each member of a union (``int``, ``tuple[int, int]``) or a
#: validator wrapper: not a field name
_UNION_TAG = re.compile(r"^(?:int|float|str|bool|list|tuple|dict|none|function-[\w-]+)(?:\[.*\])?$")


def _field_path(loc: tuple) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and _UNION_TAG.match(p))]
    return ".".join(parts) or "(top level)"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The config model that holds the field at ``loc`` (for the names a misspelt key could have meant)."""
    model: Any = ExperimentConfig
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        model = field.annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def suggestion(loc: tuple, root: type[BaseModel] | None = ExperimentConfig) -> str:
    """' (did you mean 'x'?)' for an unknown key close to a real one, else ''."""
    model = _model_at(loc) if root is ExperimentConfig else root
    if model is None or not loc:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The config model an annotation holds (``X``, ``X | None``), else None."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def field_path_problem(dotted: str, root: type[BaseModel] = ExperimentConfig) -> str | None:
    """Why ``dotted`` (``vllm.quantization``) names no field of the config, with "did you mean", or None. A path
    into a field that is not a section (a mapping of the engine's own arguments) is not looked into."""
    model: type[BaseModel] = root
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            close = difflib.get_close_matches(part, list(fields), n=1, cutoff=0.6)
            where = ".".join(parts[:i]) or "the experiment config"
            hint = f"; did you mean '{'.'.join([*parts[:i], close[0]])}'?" if close else ""
            return f"'{dotted}' is not a config field ({where} has no '{part}'{hint})"
        if i == len(parts) - 1:
            return None
        annotation = fields[part].annotation
        section = _section_model(annotation)
        if section is None:
            if any(typing.get_origin(a) is dict or a is dict for a in (annotation, *typing.get_args(annotation))):
                return None  # a mapping passed through to the engine: its keys are the engine's to check
            return f"'{dotted}' is not a config field ('{'.'.join(parts[:i + 1])}' is a value, not a section)"
        model = section
    return None


def validation_problems(exc: ValidationError, root: type[BaseModel] | None = ExperimentConfig) -> list[str]:
    """'field.path: message' for every error pydantic found."""
    by_field: dict[str, list[str]] = {}  # a value no member of a union accepts: one problem, every member's reason
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field" + (suggestion(err["loc"], root) or " (check the spelling)")
        reasons = by_field.setdefault(_field_path(err["loc"]), [])
        if msg not in reasons:
            reasons.append(msg)
    return [f"{path}: {', or: '.join(reasons)}" for path, reasons in by_field.items()]


def prompts_file_problem(config: ExperimentConfig) -> str | None:
    """Why the JSONL prompts file cannot feed this run (the runner's own rules: UTF-8, one JSON object a line, each
    with a non-empty string ``field``), or None."""
    p = config.prompts
    if p.source != "jsonl":
        return None
    path = Path(p.path or "").expanduser()
    if not path.is_file():
        return f"prompts.path: file '{p.path}' not found"
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        return f"prompts.path: cannot read '{p.path}' ({exc.strerror})"
    except UnicodeDecodeError:
        return f"prompts.path: '{p.path}' is not UTF-8 text"
    n = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            return f"prompts.path: {p.path}:{lineno}: not JSON ({exc.msg})"
        if not isinstance(obj, dict) or not isinstance(obj.get(p.field), str) or not obj[p.field]:
            keys = sorted(obj) if isinstance(obj, dict) else []
            close = difflib.get_close_matches(p.field, keys, n=1)
            hint = f" (did you mean field: '{close[0]}'?)" if close else (f"; its keys: {', '.join(keys)}" if keys else "")
            return f"prompts.field: {p.path}:{lineno} has no non-empty string '{p.field}'{hint}"
        n += 1
    return None if n else f"prompts.path: '{p.path}' holds no prompts"


def unused_section_problems(file_data: dict[str, Any], overrides: dict[str, Any], config: ExperimentConfig) -> list[str]:
    """A section (or flag) for a backend this run does not use: its settings would be silently ignored. A file's
    section for another backend is fine when ``--backend`` switched the backend on purpose."""
    out = []
    switched = overrides.get("backend") is not None
    file_backend = file_data.get("backend", "pytorch")
    for section in BACKEND_SECTIONS:
        if section == config.backend:
            continue
        flags = [FLAGS.get(k, k) for k, v in overrides.items() if v is not None and k.startswith(section + ".")]
        if flags:
            out.append(f"{', '.join(flags)}: a {section} setting, but the backend is '{config.backend}' (it would be "
                       "ignored)")
        elif section in file_data and not switched and section != file_backend:
            out.append(f"{section}: settings for backend '{section}', but the backend is '{config.backend}' (they "
                       f"would be ignored; remove the section or set backend: {section})")
    return out
