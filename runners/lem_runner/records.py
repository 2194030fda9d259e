"""The records a backend hands the measurement: what one request produced, what a loaded model is, and the model's
parameter counts and shape for the FLOPs estimate.

They live below both ``backends/`` (which fills them) and ``measurement/`` (which reads them), so neither imports
the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ParameterCounts:
    """Parameters of a decoder, split the way the FLOPs estimate needs them."""

    total: int
    input_embedding: int
    output_projection: int
    tied_embeddings: bool
    routed_expert: int = 0  # parameters of the routed experts, all of them (mixture-of-experts only)
    n_experts: int | None = None  # routed experts per MoE layer
    experts_per_token: int | None = None  # experts each token is routed to

    @property
    def non_embedding(self) -> int:
        """Parameters other than the token embeddings (the output projection is excluded only when tied)."""
        untied_head = 0 if self.tied_embeddings else self.output_projection
        return self.total - self.input_embedding - untied_head

    @property
    def is_moe(self) -> bool:
        return bool(self.routed_expert and self.n_experts and self.experts_per_token)

    @property
    def active_non_embedding(self) -> float:
        """Non-embedding parameters one token's forward pass uses: routed experts scaled by experts_per_token /
        n_experts (a dense model: all of them)."""
        if not self.is_moe:
            return float(self.non_embedding)
        share = self.experts_per_token / self.n_experts  # type: ignore[operator]
        return self.non_embedding - self.routed_expert + self.routed_expert * share

    @property
    def compute(self) -> int:
        """Parameters that take part in each token's matrix multiplies: non-embedding plus the output projection."""
        return self.non_embedding + self.output_projection


@dataclass(frozen=True)
class ModelShape:
    """What the attention term needs: layers and attention width (query heads x head dim)."""

    n_layers: int
    attention_dim: int


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
    #: the prompt's tokens as the engine saw them and the generated tokens (EOS included), for output fidelity (read
    #: after the window); None where the backend does not keep them (BackendSpec.gives_next_token_logprobs says it does)
    prompt_ids: tuple[int, ...] | None = None
    output_ids: tuple[int, ...] | None = None


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
    #: what the engine uses, JSON values: the arguments it was given and what it reports back (the result's
    #: engine_settings); a backend may complete it in its first generate call (what the engine chose at run time)
    engine_settings: dict[str, Any] = field(default_factory=dict)
    #: the engine computes in the runner process itself (PyTorch), so the process's CPU time covers it; False where
    #: it runs in child processes (vLLM's engine core, TensorRT-LLM's executor): whole_run.process_cpu_s is then null
    engine_in_process: bool = True
