"""Perplexity on a public-domain text shipped with the runner (docs/method.md, "Perplexity"), through the backend's
``rolling_loglikelihood(text) -> (summed log-likelihood, tokens, window)``. The sequence and its windows are defined
here, once: each backend only scores the windows ``rolling_windows`` gives it (PyTorch from its logits, vLLM from its
``prompt_logprobs``), so both score the same tokens with the same context."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from importlib import resources

from lem_runner.contract.quality import PERPLEXITY_TEXTS, PerplexityFigures

#: the longest window scored at once, in tokens (a window's logits are window x vocabulary floats)
MAX_WINDOW = 1024


def window_size(context: int | None, engine_limit: int | None = None) -> int:
    """Tokens per window: ``min(context - 1, MAX_WINDOW, engine_limit - 1)``, ``context`` the model's (its
    ``max_position_embeddings``; None: MAX_WINDOW) and ``engine_limit`` the most tokens the engine holds per sequence
    where that is lower (vLLM's ``max_model_len``). One less than the context: a window is sent to vLLM as a prompt,
    which must leave room for one generated token (prompt + 1 <= max_model_len), and the PyTorch backend takes the
    same windows so that both give one figure."""
    limits = [MAX_WINDOW] + [int(n) - 1 for n in (context, engine_limit) if n]
    size = min(limits)
    if size < 2:
        raise ValueError(f"a perplexity window of {size} token(s) scores nothing (context {context}, engine limit "
                         f"{engine_limit})")
    return size


def text_sequence(tokenizer, text: str) -> list[int]:
    """The text's tokens (no special tokens) after BOS (EOS when there is none; with neither, the first token is
    context only): the sequence whose tokens after the first are scored."""
    tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not tokens:
        raise ValueError("the perplexity text has no tokens")
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    seq = [start, *tokens] if start is not None else list(tokens)
    if len(seq) < 2:
        raise ValueError("the perplexity text has too few tokens")
    return seq


def rolling_windows(n: int, size: int) -> list[tuple[int, int, int]]:
    """The windows over a sequence of ``n`` tokens, each ``(start, end, scored)``: tokens ``[start, end)`` (at most
    ``size``) go in, and the last ``scored`` of them are scored, each given all tokens before it in the window.
    Every token after the first is scored exactly once. A window starts on the last token the previous one scored
    (``size - 1`` new tokens per window); the last window reaches back to ``size`` tokens where the sequence has
    them, so its few new tokens keep a long context. This is lm-eval's ``loglikelihood_rolling``
    (``get_rolling_token_windows`` with ``max_seq_len = size - 1``, ``context_len = 1``, BOS as prefix)."""
    if size < 2:
        raise ValueError("a window needs at least 2 tokens")
    out, done = [], 1  # token 0 (BOS) is context only
    while done < n:
        end = min(done + size - 1, n)
        start = max(0, end - size)
        out.append((start, end, end - done))
        done = end
    return out


def bundled_text(name: str) -> str:
    if name not in PERPLEXITY_TEXTS:
        raise ValueError(f"quality.perplexity: no bundled text '{name}' (texts: {', '.join(PERPLEXITY_TEXTS)})")
    return resources.files("lem_runner.quality").joinpath("texts", f"{name}.txt").read_text(encoding="utf-8")


def perplexity_from(loglikelihood: float, tokens: int) -> float:
    """exp of the mean negative log-likelihood per token."""
    if tokens < 1:
        raise ValueError("perplexity over no tokens")
    return math.exp(-loglikelihood / tokens)


def perplexity_figures(name: str, rolling_loglikelihood: Callable[[str], tuple[float, int, int]],
                       clock: Callable[[], float] = time.perf_counter) -> PerplexityFigures:
    t0 = clock()
    total, tokens, window = rolling_loglikelihood(bundled_text(name))
    return PerplexityFigures(perplexity=perplexity_from(total, tokens), tokens=tokens, window_tokens=window,
                             text=name, duration_s=clock() - t0)
