"""Where a continuation's tokens begin, one rule for every backend's ``loglikelihood`` hook (lm-eval's): the tokens of
``context + continuation`` past the context's own; an empty context is preceded by the BOS token (EOS where the model
has none), so the first continuation token has something to be predicted from."""

from __future__ import annotations

from collections.abc import Callable


def split_continuation(encode: Callable[[str], list[int]], bos_id: int | None, eos_id: int | None, context: str,
                       continuation: str) -> tuple[list[int], int]:
    """(token ids of the whole, index of the continuation's first token). ``encode`` adds no special tokens.
    Raises ValueError when the continuation adds no token."""
    ctx = list(encode(context))
    whole = list(encode(context + continuation))
    if len(whole) <= len(ctx):
        raise ValueError(f"continuation {continuation!r} adds no token after {context!r}")
    if not ctx:
        return [bos_id if bos_id is not None else eos_id, *whole], 1
    return whole, len(ctx)
