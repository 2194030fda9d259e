"""Statistics of repeated measurements: n, mean, sample standard deviation, 95 % confidence interval and CV.

The CI half-width is ``t * std / sqrt(n)`` with ``t`` the two-sided 95 % critical value of Student's t distribution
for ``n - 1`` degrees of freedom, exact for every df (scipy.special.stdtrit, the inverse CDF; no normal approximation
beyond 30). A study's aggregates (study/aggregate.py), comparisons and plots all use these.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass


@functools.cache
def t_critical(df: int) -> float:
    """Two-sided 95 % t critical value for ``df`` degrees of freedom: the 0.975 quantile of Student's t, exact for
    any df (1.96, the normal value, would make the interval too narrow: t is 2.040 at df 31, 2.000 at df 60)."""
    if df < 1:
        raise ValueError("degrees of freedom must be >= 1")
    from scipy.special import stdtrit  # imported here: ~0.7 s, paid only when a study aggregates

    return float(stdtrit(df, 0.975))


@dataclass(frozen=True)
class MetricStats:
    n: int
    mean: float | None = None
    std: float | None = None
    ci95: float | None = None
    cv: float | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"mean": self.mean, "std": self.std, "ci95": self.ci95, "cv": self.cv, "n": self.n}


def describe(values: Sequence[float]) -> MetricStats:
    """n, mean, sample std (n - 1), 95 % CI half-width and CV (std / mean; null when the mean is 0)."""
    n = len(values)
    if n == 0:
        return MetricStats(0)
    mean = math.fsum(values) / n
    if n == 1:
        return MetricStats(1, mean)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    ci95 = t_critical(n - 1) * std / math.sqrt(n)
    cv = std / abs(mean) if mean else None
    return MetricStats(n, mean, std, ci95, cv)
