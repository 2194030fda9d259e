"""Forward-pass FLOPs, first estimate: 2 × N_compute per processed token, with the method stated."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParameterCounts:
    """Parameters of a decoder, split the way the FLOPs estimate needs them."""

    total: int
    input_embedding: int
    output_projection: int
    tied_embeddings: bool

    @property
    def non_embedding(self) -> int:
        """Parameters other than the token embeddings (the output projection is excluded only when tied)."""
        untied_head = 0 if self.tied_embeddings else self.output_projection
        return self.total - self.input_embedding - untied_head

    @property
    def compute(self) -> int:
        """Parameters that take part in each token's matrix multiplies: non-embedding plus the output projection."""
        return self.non_embedding + self.output_projection


METHOD = (
    "2 x N_compute x tokens, tokens = input + output tokens of the window; N_compute = non-embedding parameters "
    "plus the output projection (its matmul runs for every token); attention-score FLOPs and padding not counted"
)


def estimate_flops(counts: ParameterCounts, input_tokens: int, output_tokens: int) -> float:
    return 2.0 * counts.compute * (input_tokens + output_tokens)
