"""Task accuracy on data the user supplies: the config (``quality.task``), the score in the result
(``quality.task``), and the file checks that `lem config validate` and the runner share.

Two scorers, one figure (docs/method.md, "Task accuracy"): ``builtin`` reads a multiple-choice JSONL and always works;
``lm_eval`` hands a task YAML (lm-evaluation-harness, the ``lmeval`` extra) to the harness with lem's engine behind
its ``loglikelihood``. Both score by continuation log-likelihood, so decoding settings play no part.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lem_runner.contract.backends import backend_spec, registry
from lem_runner.contract.section import Section


class TaskConfig(Section):
    """A multiple-choice task scored on the run's engine after the energy window."""

    path: str = Field(..., min_length=1, description="harness builtin: a JSONL file, one item a line: "
                      "{\"question\" (or \"context\"): str, \"choices\": [str, ...], \"answer\": index into choices}; "
                      "harness lm_eval: the task YAML (lm-evaluation-harness format; its data local, e.g. "
                      "dataset_path: json with dataset_kwargs.data_files)")
    harness: Literal["builtin", "lm_eval"] = Field(
        "builtin", description="builtin: lem's multiple-choice scorer (always installed); lm_eval: "
                               "lm-evaluation-harness (pip install 'llenergymeasure[lmeval]'), run offline")
    limit: int | None = Field(None, ge=1, le=1_000_000, description="score the first N items only (none: all)")


class TaskScore(BaseModel):
    """The task's score on this configuration (docs/method.md, "Task accuracy")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., description="the task: the JSONL file's stem (builtin) or the YAML's task name (lm_eval)")
    scorer: Literal["builtin", "lm_eval"] = Field(..., description="which harness scored it")
    accuracy: float = Field(..., ge=0, le=1, description="acc: share of items whose answer has the highest summed "
                            "log-likelihood of its continuation (' ' + choice) after the question")
    accuracy_norm: float | None = Field(None, ge=0, le=1, description="acc_norm: the same with each choice's "
                                        "log-likelihood divided by its length in characters (lm-eval's acc_norm)")
    stderr: float | None = Field(None, ge=0, description="standard error of acc: sample stdev of the per-item 0/1 "
                                 "over sqrt(n) (none when n < 2)")
    n_items: int = Field(..., ge=1, description="items scored")
    duration_s: float = Field(..., ge=0, description="wall time of the scoring, after the energy window (never in it)")


def task_problems(task: TaskConfig | None, backend: str, scenario: str) -> list[str]:
    """Why this task cannot be scored (one line each, naming the file and line), or []: the same check at
    `lem config validate` and in the runner before loading."""
    if task is None:
        return []
    if not backend_spec(backend).scores_continuations:
        able = ", ".join(name for name, spec in registry().items() if spec.scores_continuations)
        return [f"quality.task: the {backend} backend cannot score continuations yet (supported: {able})"]
    if scenario != "offline":
        return ["quality.task: scored on the offline scenario's engine only (use scenario: offline)"]
    if task.harness == "lm_eval":
        return _yaml_problems(task.path)
    try:
        load_items(task.path)
    except TaskFileError as exc:
        return [str(exc)]
    return []


class TaskFileError(ValueError):
    """A task file that cannot be scored; the message is one line naming the file (and line)."""


def load_items(path: str) -> list[tuple[str, list[str], int]]:
    """The JSONL's items as (question, choices, answer index); TaskFileError naming file:line on the first bad one."""
    p = Path(path).expanduser()
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise TaskFileError(f"quality.task.path: file '{path}' not found") from None
    except OSError as exc:
        raise TaskFileError(f"quality.task.path: cannot read '{path}' ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise TaskFileError(f"quality.task.path: '{path}' is not UTF-8 text") from None
    items = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"quality.task.path: {path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskFileError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise TaskFileError(f"{where}: not a JSON object")
        question = obj.get("question", obj.get("context"))
        if not isinstance(question, str):
            raise TaskFileError(f"{where}: no string 'question' (or 'context')")
        choices = obj.get("choices")
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c for c in choices):
            raise TaskFileError(f"{where}: 'choices' must be a non-empty list of non-empty strings")
        answer = obj.get("answer")
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise TaskFileError(f"{where}: 'answer' must be an index into choices (0..{len(choices) - 1}), "
                                f"not {answer!r}")
        items.append((question, choices, answer))
    if not items:
        raise TaskFileError(f"quality.task.path: '{path}' holds no items")
    return items


def _yaml_problems(path: str) -> list[str]:
    """The lm_eval harness: installed where the run happens, and a readable task YAML naming its task."""
    if importlib.util.find_spec("lm_eval") is None:
        return ["quality.task.harness: lm_eval is not installed here (pip install 'llenergymeasure[lmeval]'), or "
                "use harness: builtin"]
    p = Path(path).expanduser()
    if not p.is_file():
        return [f"quality.task.path: file '{path}' not found"]
    import yaml

    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        return [f"quality.task.path: {path}{line}: not a readable task YAML ({str(exc).splitlines()[0]})"]
    if not isinstance(doc, dict) or not isinstance(doc.get("task"), str):
        return [f"quality.task.path: {path}: no 'task:' name (an lm-evaluation-harness task YAML)"]
    return []
