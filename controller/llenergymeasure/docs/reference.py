"""The config field reference (docs/config-reference.md), generated from the pydantic models: every field of the
experiment config (sections as dotted paths) and of the study file, with its type, default and description.
``lem config reference -o docs/config-reference.md`` rewrites it; a test fails when the committed file is stale."""

from __future__ import annotations

import inspect
import json
import types
import typing
from typing import Any, Literal, get_args, get_origin

from lem_runner.contract import ExperimentConfig
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from llenergymeasure.config.checks import section_model
from llenergymeasure.config.study import StudyConfig

COMMAND = "lem config reference -o docs/config-reference.md"


def type_name(annotation: Any) -> str:
    """A short, readable type: ``'a' | 'b'``, ``int | null``, ``list[int]``, a section's name."""
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(json.dumps(a) for a in get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(type_name(a) for a in get_args(annotation))
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in get_args(annotation))}]"
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return f"section ({annotation.__name__})"
    return getattr(annotation, "__name__", str(annotation))


def default_text(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "(see below)"
    return f"`{json.dumps(value)}`"


def _constraints(info: FieldInfo) -> str:
    parts = []
    for meta in info.metadata:
        for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"), ("min_length", "min length"),
                          ("pattern", "pattern")):
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{sym} {value}" if attr != "pattern" else f"pattern `{value}`")
    return f" ({', '.join(parts)})" if parts else ""


def _section_doc(model: type[BaseModel]) -> str:
    return " ".join(inspect.cleandoc(model.__doc__ or "").split())


def _rows(model: type[BaseModel], prefix: str, sections: list[tuple[str, type[BaseModel]]]) -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        section = section_model(ann)
        if inspect.isclass(section) and issubclass(section, BaseModel):
            sections.append((f"{prefix}{name}", section))
        desc = (info.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{prefix}{name}` | {type_name(ann)} | {default_text(info)} | {desc}{_constraints(info)} |")
    return rows


def _table(title: str, model: type[BaseModel], prefix: str, level: str) -> list[str]:
    sections: list[tuple[str, type[BaseModel]]] = []
    out = [f"{level} {title}", ""]
    if doc := _section_doc(model):
        out += [doc, ""]
    out += ["| field | type | default | description |", "| --- | --- | --- | --- |",
            *_rows(model, prefix, sections), ""]
    for path, section in sections:
        out += _table(f"`{path}`", section, f"{path}.", "###")
    return out


def reference_markdown() -> str:
    lines = [
        "# Configuration reference", "",
        f"Generated from the pydantic models by `{COMMAND}`; do not edit by hand (a test fails when it is stale).",
        "", "A config file is YAML or JSON. An *experiment* file holds the fields below; a *study* file holds `base`, "
        "`sweep` and/or `experiments` (see the last section), whose points are experiment configs. Unknown fields are "
        "rejected, and `lem config validate FILE` reports every problem, each with its field path. For editor "
        "completion, `lem config schema -o schemas` writes JSON Schemas; `lem config init` writes a commented "
        "starter file.", "",
    ]
    lines += _table("Experiment config", ExperimentConfig, "", "##")
    lines += _table("Study config", StudyConfig, "", "##")
    lines += ["In a sweep, each key is a dotted path into the experiment config (e.g. `pytorch.batch_size`) and "
              "its value the list of values to try; the study runs the cartesian product of all axes, once per "
              "entry of `experiments` (or once over `base` when there is none).", ""]
    return "\n".join(lines)
