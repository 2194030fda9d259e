"""The efficiency Pareto front: configurations no other one beats on both throughput (higher is better) and energy
per token (lower is better)."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated (tokens/s, J/token) points, by rising throughput. A point is dominated when
    another is at least as fast and at most as costly, and strictly better in one of the two."""
    front = []
    for i, (tps, jpt) in enumerate(points):
        dominated = any(t >= tps and j <= jpt and (t > tps or j < jpt) for k, (t, j) in enumerate(points) if k != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])
