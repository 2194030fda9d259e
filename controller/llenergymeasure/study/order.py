"""The order a study's runs go in. Drift (the GPU warming up, the clock throttling, a neighbour's job) hits runs that
sit next to each other, so the order decides which comparisons it biases: ``sequential`` keeps a point's cycles
together, ``interleave`` spreads them, ``shuffle`` randomises the points within each cycle (seeded, reproducible) and
``latin_square`` balances position and carry-over (a Williams design), so no point always runs first or always
follows the same neighbour."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from llenergymeasure.config.study import ORDERS, Order

__all__ = ["ORDERS", "Order", "schedule", "williams_rows"]


def williams_rows(n: int) -> list[list[int]]:
    """A Williams design over ``n`` treatments: ``n`` rows when ``n`` is even, ``2n`` when odd.

    Row 0 is ``0, 1, n-1, 2, n-2, ...``; row ``r`` adds ``r`` (mod n) to it. Each treatment takes each position once
    in rows ``0..n-1`` (a Latin square). For even ``n`` each ordered pair of distinct treatments is adjacent exactly
    once in those rows; for odd ``n`` the mirrored rows ``n..2n-1`` are appended and each pair is adjacent exactly
    twice over all ``2n`` rows.
    """
    if n < 1:
        return []
    first = [0]
    lo, hi = 1, n - 1
    for k in range(1, n):
        if k % 2:
            first.append(lo)
            lo += 1
        else:
            first.append(hi)
            hi -= 1
    rows = [[(t + r) % n for t in first] for r in range(n)]
    if n % 2:
        rows += [list(reversed(row)) for row in rows]
    return rows


def schedule(points: Sequence[Any], n_cycles: int, order: Order, seed: int = 0) -> list[tuple[int, int]]:
    """The runs in order, as ``(point_index, cycle)``: point indices from 0, cycles from 1. ``shuffle`` draws a new
    order of the points for each cycle from one ``random.Random(seed)``, so a seed always gives the same schedule.
    ``latin_square`` takes cycle ``c``'s order from row ``(c - 1) mod rows`` of :func:`williams_rows`: fully balanced
    when ``n_cycles`` is a multiple of the number of rows (n for even n, 2n for odd n)."""
    indices = list(range(len(points)))
    cycles = range(1, n_cycles + 1)
    if order == "sequential":
        return [(i, c) for i in indices for c in cycles]
    if order == "interleave":
        return [(i, c) for c in cycles for i in indices]
    if order == "shuffle":
        rng = random.Random(seed)
        out = []
        for c in cycles:
            perm = list(indices)
            rng.shuffle(perm)
            out.extend((i, c) for i in perm)
        return out
    if order == "latin_square":
        rows = williams_rows(len(indices))
        return [(i, c) for c in cycles for i in rows[(c - 1) % len(rows)]] if rows else []
    raise ValueError(f"unknown order {order!r}")


def group_by_engine(runs: Sequence[tuple[int, int]], engines: Sequence[str]) -> list[tuple[int, int]]:
    """``runs`` (from :func:`schedule`) with each stretch of one cycle regrouped so runs of the same engine
    (``engines[point]``) are adjacent: groups in the order their engine first appears, runs within a group in their
    scheduled order. Stretches are split where the cycle changes, so a cycle's runs never mix with another's; a
    ``sequential`` order (each stretch one run) is left as it is."""
    out: list[tuple[int, int]] = []
    k = 0
    while k < len(runs):
        end = k
        while end < len(runs) and runs[end][1] == runs[k][1]:
            end += 1
        groups: dict[str, list[tuple[int, int]]] = {}
        for run in runs[k:end]:
            groups.setdefault(engines[run[0]], []).append(run)
        for group in groups.values():
            out.extend(group)
        k = end
    return out
