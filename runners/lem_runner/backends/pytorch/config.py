"""The ``pytorch:`` section: transformers ``from_pretrained`` / ``generate`` settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lem_runner.contract.section import Section


class PyTorchConfig(Section):
    """transformers ``generate`` on PyTorch. Fields map onto ``from_pretrained`` / ``generate`` arguments."""

    batch_size: int = Field(1, ge=1, le=4096)
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = None
    use_cache: bool = True
