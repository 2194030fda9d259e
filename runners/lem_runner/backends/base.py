"""The InferenceBackend protocol: load a model, then generate for a list of prompts with per-token timestamps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from lem_runner.contract.config import ExperimentConfig
from lem_runner.measurement.flops import ModelShape, ParameterCounts


@dataclass(frozen=True)
class GenerationRecord:
    """One request's outcome: token counts and timestamps (time.perf_counter seconds) taken during generation.

    ``start`` is when the ``generate`` call that carried the request began handing it to the engine (a PyTorch batch's
    own start). ``scheduled`` is when the engine began prefilling it, where known: the PyTorch backend knows it exactly
    (a static batch prefills at its start); vLLM's request stats give it when turned on; else None, and the analysis
    estimates it from the engine's steps. ``submitted`` is set by the measurement loop: when the request was handed to
    the engine as lem's offline scenario defines it, the start of the pass over the prompt set it belongs to (every
    prompt is submitted at once, as in MLPerf Offline and ``vllm bench serve`` at an infinite request rate)."""

    input_tokens: int
    output_tokens: int
    start: float
    token_times: list[float]
    scheduled: float | None = None
    submitted: float | None = None


@dataclass(frozen=True)
class LoadedModel:
    """What a backend reports once its model is loaded."""

    device_kind: str  # "cuda" or "cpu": decides the energy source
    parameters: ParameterCounts
    libraries: dict[str, str]
    cuda_version: str | None = None
    latency_method: str = ""  # how this backend timestamps tokens, in words (goes into the result)
    shape: ModelShape | None = None  # layers and attention width, for the FLOPs attention term
    parameter_source: str = "the loaded model's parameters"  # where ``parameters`` came from
    details: dict[str, str | int | float | bool | None] = field(default_factory=dict)
    #: the engine computes in the runner process itself (PyTorch), so the process's CPU time covers it; False where
    #: it runs in child processes (vLLM's engine core, TensorRT-LLM's executor): whole_run.process_cpu_s is then null
    engine_in_process: bool = True


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
