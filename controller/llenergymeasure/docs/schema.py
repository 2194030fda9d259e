"""JSON Schemas of the experiment and study configs (``lem config schema``). The study schema types ``base`` and each
of ``experiments`` as experiment configs, so an editor completes and checks the fields inside a study too.

A schema checks fields, types, ranges and unknown keys; cross-field rules (``source: jsonl`` needs ``path``, the
device count a backend needs) stay with ``lem config validate``, which runs the models themselves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lem_runner.contract import ExperimentConfig
from lem_runner.contract.atomic import atomic_write_text

from llenergymeasure.config.study import StudyConfig
from llenergymeasure.errors import ConfigError

DRAFT = "https://json-schema.org/draft/2020-12/schema"
FILES = {"experiment": "experiment.schema.json", "study": "study.schema.json", "config": "lem-config.schema.json"}


def _defs() -> dict[str, Any]:
    """ExperimentConfig, StudyConfig and their sections, all under one ``$defs``."""
    exp = ExperimentConfig.model_json_schema(ref_template="#/$defs/{model}")
    study = StudyConfig.model_json_schema(ref_template="#/$defs/{model}")
    defs = {**exp.pop("$defs", {}), **study.pop("$defs", {})}
    ref = {"$ref": "#/$defs/ExperimentConfig"}
    study["properties"]["base"] = {"anyOf": [ref, {"type": "string"}], "description": "experiment fields shared by "
                                   "every point, or the path of an experiment file (relative to the study file)"}
    study["properties"]["experiments"] = {"type": "array", "items": ref,
                                          "description": "explicit points, each merged over base"}
    study["properties"]["sweep"]["propertyNames"] = {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"}
    study["properties"]["groups"]["additionalProperties"]["items"]["propertyNames"] = \
        study["properties"]["sweep"]["propertyNames"]
    study["required"] = []
    study["anyOf"] = [{"required": [k]} for k in ("base", "sweep", "groups", "experiments")]  # what makes a study
    defs["ExperimentConfig"] = exp
    defs["StudyConfig"] = study
    return defs


def schemas() -> dict[str, dict[str, Any]]:
    """experiment / study / config (either) schema documents."""
    defs = _defs()
    out = {}
    for key, title, body in (
        ("experiment", "lem experiment config", {"$ref": "#/$defs/ExperimentConfig"}),
        ("study", "lem study config", {"$ref": "#/$defs/StudyConfig"}),
        ("config", "lem config (an experiment or a study)",
         {"oneOf": [{"$ref": "#/$defs/ExperimentConfig"}, {"$ref": "#/$defs/StudyConfig"}]}),
    ):
        out[key] = {"$schema": DRAFT, "title": title, **body, "$defs": defs}
    return out


def write_schemas(out_dir: Path) -> list[Path]:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"-o: '{out_dir}' exists and is not a directory") from None
    return [atomic_write_text(out_dir / FILES[k], json.dumps(doc, indent=2) + "\n") for k, doc in schemas().items()]
