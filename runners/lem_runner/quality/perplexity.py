"""Perplexity on a public-domain text shipped with the runner (docs/method.md, "Perplexity"), through the backend's
``rolling_loglikelihood(text) -> (summed log-likelihood, tokens)``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from importlib import resources

from lem_runner.contract.quality import PERPLEXITY_TEXTS, PerplexityFigures


def bundled_text(name: str) -> str:
    if name not in PERPLEXITY_TEXTS:
        raise ValueError(f"quality.perplexity: no bundled text '{name}' (texts: {', '.join(PERPLEXITY_TEXTS)})")
    return resources.files("lem_runner.quality").joinpath("texts", f"{name}.txt").read_text(encoding="utf-8")


def perplexity_from(loglikelihood: float, tokens: int) -> float:
    """exp of the mean negative log-likelihood per token."""
    if tokens < 1:
        raise ValueError("perplexity over no tokens")
    return math.exp(-loglikelihood / tokens)


def perplexity_figures(name: str, rolling_loglikelihood: Callable[[str], tuple[float, int]],
                       clock: Callable[[], float] = time.perf_counter) -> PerplexityFigures:
    t0 = clock()
    total, tokens = rolling_loglikelihood(bundled_text(name))
    return PerplexityFigures(perplexity=perplexity_from(total, tokens), tokens=tokens, text=name,
                             duration_s=clock() - t0)
