"""Warmup before the window: a fixed number of batches, or until per-batch latency has settled (its coefficient of
variation over a sliding window under a threshold), with a ceiling so a noisy machine cannot warm up forever."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from lem_runner.contract.config import WarmupConfig
from lem_runner.contract.result import WarmupResult


def coefficient_of_variation(values: list[float]) -> float | None:
    """Sample standard deviation over mean; None for fewer than two values or a zero mean."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean > 0 else None


def run_warmup(config: WarmupConfig, run_batch: Callable[[int], float]) -> WarmupResult:
    """Call ``run_batch(i)`` (which returns that batch's latency in seconds) until the config says stop."""
    latencies: list[float] = []
    if config.mode == "fixed":
        for i in range(config.n_batches):
            latencies.append(run_batch(i))
        return WarmupResult(mode="fixed", batches=len(latencies), stop_reason=f"fixed count of {config.n_batches}",
                            latencies_s=latencies)
    cv = None
    for i in range(config.max_batches):
        latencies.append(run_batch(i))
        if len(latencies) >= config.window:
            cv = coefficient_of_variation(latencies[-config.window :])
            if cv is not None and cv < config.cv_threshold:
                return WarmupResult(
                    mode="convergence", batches=len(latencies), final_cv=cv, latencies_s=latencies,
                    stop_reason=f"converged: latency CV {cv:.4f} over the last {config.window} batches "
                                f"< {config.cv_threshold}",
                )
    return WarmupResult(
        mode="convergence", batches=len(latencies), final_cv=cv, latencies_s=latencies,
        stop_reason=f"max_batches {config.max_batches} reached without converging (last CV "
                    f"{'n/a' if cv is None else f'{cv:.4f}'} >= {config.cv_threshold})",
    )
