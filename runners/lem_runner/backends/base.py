"""The InferenceBackend protocol: load a model, then generate for a list of prompts with per-token timestamps."""

from __future__ import annotations

from importlib import metadata
from typing import Protocol, runtime_checkable

from lem_runner.contract.config import ExperimentConfig
from lem_runner.records import GenerationRecord, LoadedModel


@runtime_checkable
class InferenceBackend(Protocol):
    """A generation engine the runner measures."""

    name: str
    #: prompts per ``generate`` call; None means the engine takes the whole set and schedules it itself
    batch_size: int | None

    def load(self) -> LoadedModel: ...

    def generate(self, prompts: list[str]) -> list[GenerationRecord]: ...

    def close(self) -> None: ...


def input_token_limit(config: ExperimentConfig) -> int:
    """Prompts are truncated to this many tokens: a synthetic prompt's exact length, else ``max_input_tokens``."""
    if config.prompts.source == "synthetic" and config.prompts.input_tokens is not None:
        return config.prompts.input_tokens
    return config.max_input_tokens


def library_versions(names: list[str]) -> dict[str, str]:
    """Installed versions of the named distributions; those not installed are left out."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
