"""Warmup before the window: a fixed number of batches, or until per-batch latency has settled (its coefficient of
variation over a sliding window under a threshold), with a ceiling so a noisy machine cannot warm up forever.

Convergence compares like with like: it repeats the same batch, so the CV measures how the engine's speed settles
(compilation, caches, clocks), not how batch contents differ. Cycling through different batches would make a warm
engine with unequal batches never converge and let uniform content converge while still cold."""

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


FIXED_METHOD = "the prompt set's batches in order, cycled, n_batches calls; latencies recorded, not compared"
CONVERGENCE_METHOD = ("the same batch (the prompt set's first) repeated, so latencies compare like with like; stop when "
                      "the sample CV of the last `window` latencies < cv_threshold")


def warmup_batch(config: WarmupConfig, call: int, n_batches: int) -> int:
    """Index of the batch that warmup call ``call`` (from 0) runs: cycled in fixed mode, always the first in
    convergence mode."""
    return 0 if config.mode == "convergence" else call % n_batches


def run_warmup(config: WarmupConfig, run_batch: Callable[[int], float]) -> WarmupResult:
    """Call ``run_batch(i)`` for i = 0, 1, ... (it runs warmup call i, see ``warmup_batch``, and returns its latency in
    seconds) until the config says stop."""
    latencies: list[float] = []
    if config.mode == "fixed":
        for i in range(config.n_batches):
            latencies.append(run_batch(i))
        return WarmupResult(mode="fixed", batches=len(latencies), stop_reason=f"fixed count of {config.n_batches}",
                            latencies_s=latencies, method=FIXED_METHOD)
    cv = None
    for i in range(config.max_batches):
        latencies.append(run_batch(i))
        if len(latencies) >= config.window:
            cv = coefficient_of_variation(latencies[-config.window :])
            if cv is not None and cv < config.cv_threshold:
                return WarmupResult(
                    mode="convergence", batches=len(latencies), final_cv=cv, latencies_s=latencies,
                    method=CONVERGENCE_METHOD, stop_reason=f"converged: latency CV {cv:.4f} over the last {config.window} batches "
                                f"< {config.cv_threshold}",
                )
    return WarmupResult(
        mode="convergence", batches=len(latencies), final_cv=cv, latencies_s=latencies, method=CONVERGENCE_METHOD,
        stop_reason=f"max_batches {config.max_batches} reached without converging (last CV "
                    f"{'n/a' if cv is None else f'{cv:.4f}'} >= {config.cv_threshold})",
    )
