"""What `lem run` would refuse beyond the models' own rules, checked the same way by `lem config validate`: every
problem at once, each naming its field (or flag) and file.

- pydantic errors, all of them, with "did you mean" for a misspelt key;
- a JSONL prompts file that is missing, unreadable, or lacks the configured ``field`` (which would otherwise fail
  only after the model loaded, reading as a model problem);
- a setting the backend's engine, installed on this host, does not know (a pass-through key such as
  ``pytorch.generate_kwargs.foo``), checked against its own definitions as the runner checks it;
- a section for a backend the run does not use (a ``vllm:`` section on a pytorch run, an override of
  ``vllm.max_num_seqs`` on a pytorch run): its settings would be silently ignored. The model refuses such a section
  too; checking here first lets every problem be reported at once.

``--batch-size`` sets whichever field the backend's spec names as its batch knob (``pytorch.batch_size``,
``vllm.max_num_seqs``, ``tensorrt.max_batch_size``); a backend without one refuses the flag with its reason.
"""

from __future__ import annotations

import difflib
import json
import re
import typing
from pathlib import Path
from typing import Any, get_args

from lem_runner.contract import ExperimentConfig, backend_spec, registry
from lem_runner.contract.backends import foreign_section_message
from lem_runner.contract.quality import quality_problems
from lem_runner.contract.task import task_problems
from pydantic import BaseModel, ValidationError

from llenergymeasure.errors import ConfigError

#: the backends' section names in ExperimentConfig (each section is named after its backend)
BACKEND_SECTIONS = tuple(registry())
#: the override key ``--batch-size`` sets: resolved to the backend's batch knob before the config is built
BATCH_SIZE = "batch_size"
#: the `lem run` flag that sets each dotted field, to name the flag in a message
FLAGS = {"model": "--model", "backend": "--backend", BATCH_SIZE: "--batch-size",
         **{s.batch_knob: "--batch-size" for s in registry().values() if s.batch_knob},
         "n_prompts": "--n-prompts", "max_output_tokens": "--max-output-tokens", "dtype": "--dtype",
         "device": "--device", "name": "--name"}
DEFAULT_BACKEND = ExperimentConfig.model_fields["backend"].default


#: the tag pydantic puts in an error's location for each member of a union (``int``, ``tuple[int, int]``) or a
#: validator wrapper: not a field name
_UNION_TAG = re.compile(r"^(?:int|float|str|bool|list|tuple|dict|none|function-[\w-]+)(?:\[.*\])?$")


def _field_path(loc: tuple) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and _UNION_TAG.match(p))]
    return ".".join(parts) or "(top level)"


def section_model(annotation: Any) -> Any:
    """The model of a section field: ``X`` for ``X`` or ``X | None`` (a backend section, carbon), else as given."""
    members = [a for a in get_args(annotation) if a is not type(None)]
    if len(members) == 1 and isinstance(members[0], type) and issubclass(members[0], BaseModel):
        return members[0]
    return annotation


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The config model that holds the field at ``loc`` (for the names a misspelt key could have meant)."""
    model: Any = ExperimentConfig
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        model = section_model(field.annotation)
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


def task_file_problems(config: ExperimentConfig) -> list[str]:
    """Why ``quality.task`` cannot be scored (its JSONL or YAML, the harness, the backend), by the runner's own
    check (lem_runner.contract.task), or []. A container run gets a copy of the builtin harness's JSONL (the
    docker launcher puts it in the run's folder); an lm_eval YAML names data files of its own, which do not travel,
    and a Slurm job gets no copy yet."""
    from llenergymeasure.host.inventory import backend_installed

    task = config.quality.task
    if task is not None and config.runner == "slurm":
        return ["quality.task: not scored on runner slurm yet (the task file does not travel with the job)"]
    contained = config.runner.startswith("docker") or (config.runner == "auto"
                                                       and not backend_installed(config.backend))
    if contained and (problem := contained_task_problem(config, "runner: local")):
        return [problem]
    return task_problems(task, config.backend, config.scenario)


def contained_task_problem(config: ExperimentConfig, instead: str) -> str | None:
    """Why ``quality.task`` cannot be scored in the backend's container, or None: an lm_eval task YAML names data
    files of its own, which do not travel (only the builtin harness's JSONL is copied in). ``instead``: how to run it
    on this host (``runner: local``; for --isolated, without it). Checked where the config names a container
    (``task_file_problems``) and where the command line asks for one (--isolated, plan.py), both before any run."""
    task = config.quality.task
    if task is None or task.harness != "lm_eval":
        return None
    return (f"quality.task.harness: lm_eval runs on this host only (its task YAML's data files do not travel into "
            f"the {config.backend} container); use harness: builtin, or {instead}")


def quality_setting_problems(config: ExperimentConfig, in_study: bool) -> list[str]:
    """Why ``quality.reference`` or ``quality.perplexity`` cannot be taken (the backend, the scenario, sampled
    decoding), by the runner's own check (lem_runner.contract.quality), or []. A reference names a point of a
    study, so a single experiment is refused one."""
    q = config.quality
    problems = quality_problems(q, config.backend, config.scenario, config.decoding.do_sample)
    if q.reference and not in_study:
        problems.append(f"quality.reference: '{q.reference}' names a point of a study (lem run STUDY.yaml); a single "
                        "experiment has no other point to compare with")
    if q.reference and config.runner == "slurm":
        problems.append("quality.reference: not on runner slurm yet (its runs go side by side, so the reference's "
                        "outputs are not there before the others start)")
    return problems


def engine_setting_problems(config: ExperimentConfig) -> list[str]:
    """What the backend's engine, where it is installed on this host, would refuse in the config (unknown
    pass-through keys, knobs the engine lacks), read from the engine's own definitions by the backend's
    ``engine_check``: the runner runs the same check before loading, so `lem config validate` and `lem run` agree
    where the host has the engine (pytorch's transformers); where it has not (vLLM, TensorRT-LLM live in their images)
    the runner's check reports it, as a config error with exit 2."""
    model = Path(config.model).expanduser()
    try:
        folder = str(model) if model.is_dir() else None
    except OSError:  # a name the file system refuses (too long): not a folder; the model check names it
        folder = None
    return backend_spec(config.backend).engine_problems(config, folder, in_runner=False)


def batch_knob(backend: str) -> str:
    """The dotted field ``--batch-size`` sets for ``backend``; ConfigError when the backend has none."""
    spec = backend_spec(backend)
    if spec.batch_knob is None:
        raise ConfigError(f"--batch-size: the {backend} backend has no batch knob"
                          + (f" ({spec.batch_refusal})" if spec.batch_refusal else ""))
    return spec.batch_knob


def resolve_batch_flag(backends: list[Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with ``--batch-size`` (key BATCH_SIZE) set on the batch knob of each of ``backends`` (one for an
    experiment; each backend a study's points use); unknown backends are left to the model's own error."""
    if overrides.get(BATCH_SIZE) is None:
        return {k: v for k, v in overrides.items() if k != BATCH_SIZE}
    value = overrides[BATCH_SIZE]
    out = {k: v for k, v in overrides.items() if k != BATCH_SIZE}
    for backend in sorted({b for b in backends if isinstance(b, str) and b in registry()}):
        out[batch_knob(backend)] = value
    return out


def experiment_backend(data: dict[str, Any], overrides: dict[str, Any]) -> Any:
    return overrides.get("backend") or data.get("backend", DEFAULT_BACKEND)


def split_backend_sections(data: dict[str, Any], file_data: dict[str, Any],
                           overrides: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``data`` without the sections of backends the run does not use, and a problem for each that held settings:
    a flag for another backend, or a file's section for one. A file's section for its own backend is dropped
    without complaint when ``--backend`` switched the backend on purpose."""
    backend = experiment_backend(data, {})
    if not isinstance(backend, str) or backend not in registry():
        return data, []  # the model names the unknown backend
    switched = overrides.get("backend") is not None
    file_backend = file_data.get("backend", DEFAULT_BACKEND)
    out, problems = dict(data), []
    for section in BACKEND_SECTIONS:
        if section == backend or section not in out:
            continue
        del out[section]
        flags = [FLAGS.get(k, k) for k, v in overrides.items() if v is not None and k.startswith(section + ".")]
        if flags:
            problems.append(f"{', '.join(flags)}: a {section} setting, but the backend is '{backend}' (it would be "
                            "ignored)")
        elif section in file_data and not (switched and section == file_backend):
            problems.append(f"{section}: {foreign_section_message(section, backend)}")
    return out, problems
