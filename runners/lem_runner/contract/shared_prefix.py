"""The ``serving.shared_prefix:`` section: a shared system prompt ahead of every request's prompt, so a server's
prefix cache (vLLM's ``enable_prefix_caching``) has something to serve: ``groups`` distinct prefixes of ``tokens``
each, requests assigned to a group round-robin or by a seeded draw. The prefixes are drawn from the serving seed, so
the same config sends the same prompts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SharedPrefixConfig(BaseModel):
    """``tokens`` of shared system prompt in front of each request's prompt: exactly that many token ids when the
    prompts are token ids (``serving.input_tokens`` with a model vocabulary), else that many words (text prompts:
    a dataset, the experiment's prompts; a word is at least one token for most tokenizers). ``groups`` distinct
    prefixes (differing from their first token on), each request in one: ``round_robin`` (request i in group
    i mod groups) or ``random`` (drawn with the serving seed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tokens: int = Field(..., ge=1, le=131072, description="length of each shared prefix (token ids, or words for "
                                                          "text prompts)")
    groups: int = Field(1, ge=1, le=100_000, description="distinct prefixes; each request carries one of them")
    assign: Literal["round_robin", "random"] = Field(
        "round_robin", description="which group a request gets: request i -> i mod groups, or a seeded draw")
