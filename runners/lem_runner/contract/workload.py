"""Serving workloads read from files: a trace (arrival times and lengths) or a dataset (prompts and output lengths).

The controller reads them before a run (so `lem config validate` refuses a missing or malformed file) and sends the
items in the run request; the runner never opens a host path. Errors name the file and line.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

#: the most items a file may contribute (a request stays a reasonable size)
MAX_ITEMS = 1_000_000

_TIME_KEYS = ("timestamp", "Timestamp", "arrival_time", "time")
_INPUT_KEYS = ("input_length", "input_tokens", "Request tokens", "prompt_tokens")
_OUTPUT_KEYS = ("output_length", "output_tokens", "Response tokens", "completion_tokens")


class WorkloadError(ValueError):
    """A trace or dataset that cannot be used: names the field, file and line."""


class WorkloadItem(BaseModel):
    """One request of a file workload. A trace gives ``arrival_s`` and lengths; a dataset gives ``prompt``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arrival_s: float | None = Field(None, ge=0, description="offset from the first arrival (trace)")
    prompt: str | None = None
    input_tokens: int | None = Field(None, ge=1)
    output_tokens: int | None = Field(None, ge=1)
    user_turns: list[str] | None = Field(None, description="a recorded conversation's user messages, in order "
                                                           "(serving.conversations.dataset)")


def _lines(path: Path, field: str):
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise WorkloadError(f"{field}: cannot read '{path}' ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WorkloadError(f"{field}: '{path}' is not UTF-8 text") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise WorkloadError(f"{field}: {path}:{lineno}: not JSON ({getattr(exc, 'msg', 'nested too deeply')})") \
                from None
        if not isinstance(obj, dict):
            raise WorkloadError(f"{field}: {path}:{lineno}: expected a JSON object")
        yield lineno, obj


def _first(obj: dict, keys: tuple[str, ...]):
    for k in keys:
        if k in obj:
            return obj[k]
    return None


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def read_trace(path: str | Path, time_unit: str = "ms", limit: int = MAX_ITEMS) -> list[WorkloadItem]:
    """Arrival offsets (from the first line's timestamp, which must not decrease) and lengths (Mooncake/BurstGPT
    style keys: timestamp, input_length, output_length)."""
    path, field = Path(path), "serving.trace"
    scale = 1e-3 if time_unit == "ms" else 1.0
    items: list[WorkloadItem] = []
    t0 = last = None
    for lineno, obj in _lines(path, field):
        ts, n_in, n_out = _first(obj, _TIME_KEYS), _first(obj, _INPUT_KEYS), _first(obj, _OUTPUT_KEYS)
        if not isinstance(ts, int | float) or isinstance(ts, bool) or ts < 0:
            raise WorkloadError(f"{field}: {path}:{lineno}: needs a timestamp >= 0 (keys: {', '.join(_TIME_KEYS)})")
        if not _positive_int(n_in) or not _positive_int(n_out):
            raise WorkloadError(f"{field}: {path}:{lineno}: needs integer input_length and output_length >= 1")
        if last is not None and ts < last:
            raise WorkloadError(f"{field}: {path}:{lineno}: timestamps must not decrease ({ts} after {last})")
        t0 = ts if t0 is None else t0
        last = ts
        items.append(WorkloadItem(arrival_s=(ts - t0) * scale, input_tokens=n_in, output_tokens=n_out))
        if len(items) >= limit:
            break
    if not items:
        raise WorkloadError(f"{field}: '{path}' holds no requests")
    return items


def _sharegpt(obj: dict) -> tuple[str, str | None] | None:
    turns = obj.get("conversations", obj.get("conversation"))
    if not isinstance(turns, list):
        return None
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            return None
        who = turn.get("from", turn.get("role"))
        text = turn.get("value", turn.get("content"))
        if who in ("human", "user") and isinstance(text, str) and text:
            nxt = turns[i + 1] if i + 1 < len(turns) and isinstance(turns[i + 1], dict) else {}
            reply = nxt.get("value", nxt.get("content"))
            return text, reply if isinstance(reply, str) else None
    return None


def read_dataset(path: str | Path, fmt: str = "sharegpt", limit: int = MAX_ITEMS) -> list[WorkloadItem]:
    """Prompts (and output lengths) from a JSONL dataset. ShareGPT: the first human turn is the prompt; the reply's
    length in words x 4/3 stands in for its token count (the runner's tokenizer is not on the host). Lines without
    a usable conversation are skipped; a file with none is an error."""
    path, field = Path(path), "serving.dataset.path"
    items: list[WorkloadItem] = []
    for lineno, obj in _lines(path, field):
        if fmt == "sharegpt":
            found = _sharegpt(obj)
            if found is None:
                continue
            prompt, reply = found
            out = max(1, round(len(reply.split()) * 4 / 3)) if reply else None
            items.append(WorkloadItem(prompt=prompt, output_tokens=out))
        else:
            prompt, out = obj.get("prompt"), obj.get("output_tokens")
            if not isinstance(prompt, str) or not prompt:
                raise WorkloadError(f"{field}: {path}:{lineno}: expected a non-empty string 'prompt'")
            if out is not None and not _positive_int(out):
                raise WorkloadError(f"{field}: {path}:{lineno}: output_tokens must be an integer >= 1")
            items.append(WorkloadItem(prompt=prompt, output_tokens=out))
        if len(items) >= limit:
            break
    if not items:
        raise WorkloadError(f"{field}: '{path}' holds no usable {fmt} requests")
    return items


def read_conversations(path: str, limit: int) -> list[WorkloadItem]:
    """The human turns of each line of a ShareGPT-style multi-turn JSONL (``conversations``: [{from, value}]), at
    most ``limit`` conversations; a line without a human turn is an error naming it."""
    field = "serving.conversations.dataset"
    out: list[WorkloadItem] = []
    for lineno, obj in _lines(Path(path), field):
        turns = obj.get("conversations")
        users = [t.get("value") for t in turns if isinstance(t, dict) and t.get("from") in ("human", "user")
                 and isinstance(t.get("value"), str) and t.get("value")] if isinstance(turns, list) else []
        if not users:
            raise WorkloadError(f"{field}: {path}:{lineno}: no human turn in 'conversations'")
        out.append(WorkloadItem(user_turns=users))
        if len(out) >= limit:
            break
    if not out:
        raise WorkloadError(f"{field}: '{path}' holds no conversation")
    return out
