"""Load the prompts an experiment runs, in a deterministic order."""

from __future__ import annotations

import json
import random
from importlib import resources
from pathlib import Path

from lem_runner.contract.config import PromptConfig

# Common English words for synthetic prompts: each is at least one token in any BPE vocabulary, so a prompt of
# ``n + 16`` words tokenises to at least ``n`` tokens and is then truncated to exactly ``n`` by the backend.
_WORDS = (
    "time year people way day man thing woman life child world school state family student group country problem "
    "hand part place case week company system program question work government number night point home water room "
    "mother area money story fact month lot right study book eye job word business issue side kind head house "
    "service friend father power hour game line end member law car city community name president team minute idea "
    "kid body information back parent face others level office door health person art war history party result "
    "change morning reason research girl guy moment air teacher force education"
).split()


class PromptError(ValueError):
    """A prompt source that cannot be read: names the file and line."""


def _builtin() -> list[str]:
    text = resources.files("lem_runner.prompts").joinpath("builtin.jsonl").read_text(encoding="utf-8")
    return [json.loads(line)["prompt"] for line in text.splitlines() if line.strip()]


def _jsonl(path: Path, field: str) -> list[str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PromptError(f"{path}: cannot read prompts file ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PromptError(f"{path}: prompts file is not UTF-8") from None
    prompts: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get(field), str) or not obj[field]:
            raise PromptError(f"{path}:{lineno}: expected an object with a non-empty string '{field}'")
        prompts.append(obj[field])
    if not prompts:
        raise PromptError(f"{path}: no prompts in file")
    return prompts


def _synthetic(n: int, input_tokens: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(input_tokens + 16)) for _ in range(n)]


def load_prompts(cfg: PromptConfig, n: int, seed: int, path_override: str | None = None,
                 warnings: list[str] | None = None) -> list[str]:
    """Exactly ``n`` prompts. A set smaller than ``n`` is cycled through in order; for a JSONL file that is said in
    ``warnings`` (the same prompt measured again is a different workload from ``n`` distinct ones)."""
    if cfg.source == "synthetic":
        return _synthetic(n, cfg.input_tokens or 1, seed)
    base = _builtin() if cfg.source == "builtin" else _jsonl(Path(path_override or cfg.path or ""), cfg.field)
    if cfg.source == "jsonl" and len(base) < n and warnings is not None:
        warnings.append(f"prompts file has {len(base)} prompt(s) but n_prompts is {n}: cycled, each measured "
                        f"{n / len(base):.1f} times on average")
    return [base[i % len(base)] for i in range(n)]
