"""Run orders: determinism (same inputs, same schedule) and the balance of the latin_square (Williams) design."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.study.order import ORDERS, schedule, williams_rows


def _cycles(runs: list[tuple[int, int]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for point, cycle in runs:
        out.setdefault(cycle, []).append(point)
    return out


@pytest.mark.parametrize("order", ORDERS)
def test_every_order_is_deterministic_and_runs_each_point_once_per_cycle(order):
    points = list(range(5))
    runs = schedule(points, 4, order, seed=11)
    assert runs == schedule(points, 4, order, seed=11)
    assert Counter(runs) == Counter((p, c) for p in points for c in range(1, 5))  # each (point, cycle) exactly once


def test_shuffle_same_seed_same_order_other_seed_other_order():
    points = list(range(6))
    a = schedule(points, 3, "shuffle", seed=42)
    assert a == schedule(points, 3, "shuffle", seed=42)
    assert a != schedule(points, 3, "shuffle", seed=43)


@pytest.mark.parametrize("n", [2, 4, 6, 8])
def test_williams_even_n_each_position_once_and_each_ordered_pair_adjacent_once(n):
    rows = williams_rows(n)
    assert len(rows) == n
    for row in rows:
        assert sorted(row) == list(range(n))
    for position in range(n):
        assert sorted(row[position] for row in rows) == list(range(n))
    pairs = Counter(pair for row in rows for pair in pairwise(row))
    assert set(pairs) == {(a, b) for a in range(n) for b in range(n) if a != b}
    assert set(pairs.values()) == {1}


@pytest.mark.parametrize("n", [3, 5, 7])
def test_williams_odd_n_latin_square_then_mirror_balances_pairs_twice(n):
    rows = williams_rows(n)
    assert len(rows) == 2 * n
    for half in (rows[:n], rows[n:]):
        for position in range(n):
            assert sorted(row[position] for row in half) == list(range(n))
    pairs = Counter(pair for row in rows for pair in pairwise(row))
    assert set(pairs) == {(a, b) for a in range(n) for b in range(n) if a != b}
    assert set(pairs.values()) == {2}


def test_latin_square_schedule_takes_one_row_per_cycle_and_wraps():
    points = ["a", "b", "c", "d"]
    runs = schedule(points, 5, "latin_square")
    by_cycle = _cycles(runs)
    rows = williams_rows(4)
    assert [by_cycle[c] for c in range(1, 5)] == rows
    assert by_cycle[5] == rows[0]
    assert rows[0] == [0, 1, 3, 2]
    # over n cycles: each point in each position once, each point after each other point once
    four = [by_cycle[c] for c in range(1, 5)]
    assert all(sorted(col) == [0, 1, 2, 3] for col in zip(*four))
    assert Counter(pair for row in four for pair in pairwise(row)) == Counter(
        {(a, b): 1 for a in range(4) for b in range(4) if a != b})


def test_latin_square_of_one_and_two_points():
    assert schedule(["x"], 3, "latin_square") == [(0, 1), (0, 2), (0, 3)]
    assert schedule(["x", "y"], 2, "latin_square") == [(0, 1), (1, 1), (1, 2), (0, 2)]


def test_latin_square_is_a_valid_study_order():
    assert StudyConfig.model_validate({"order": "latin_square"}).order == "latin_square"
