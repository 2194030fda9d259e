"""Study cycles: the config fields and the run schedule for each order."""

from __future__ import annotations

import random

import pytest
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.study.order import schedule
from pydantic import ValidationError

POINTS = ["a", "b", "c"]


def test_sequential_runs_all_cycles_of_a_point_before_the_next():
    assert schedule(POINTS, 2, "sequential") == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]


def test_interleave_runs_cycle_1_of_every_point_then_cycle_2():
    assert schedule(POINTS, 2, "interleave") == [(0, 1), (1, 1), (2, 1), (0, 2), (1, 2), (2, 2)]


def test_shuffle_permutes_the_points_within_each_cycle_by_seed():
    runs = schedule(POINTS, 2, "shuffle", seed=0)
    # the exact schedule for seed 0: one Random(0), one shuffle per cycle
    assert runs == [(0, 1), (2, 1), (1, 1), (2, 2), (1, 2), (0, 2)]
    rng = random.Random(0)
    expected = []
    for cycle in (1, 2):
        perm = [0, 1, 2]
        rng.shuffle(perm)
        expected += [(i, cycle) for i in perm]
    assert runs == expected
    # cycles stay in order; each holds every point once
    assert [c for _, c in runs] == [1, 1, 1, 2, 2, 2]
    assert sorted(i for i, c in runs if c == 2) == [0, 1, 2]
    assert schedule(POINTS, 2, "shuffle", seed=0) == runs  # reproducible
    assert schedule(POINTS, 2, "shuffle", seed=1) == [(1, 1), (2, 1), (0, 1), (2, 2), (0, 2), (1, 2)]


def test_one_cycle_of_one_point_is_one_run_in_every_order():
    for order in ("sequential", "interleave", "shuffle"):
        assert schedule(["only"], 1, order, seed=7) == [(0, 1)]


def test_unknown_order_is_refused():
    with pytest.raises(ValueError, match="unknown order"):
        schedule(POINTS, 1, "random")  # type: ignore[arg-type]


def test_study_config_defaults_and_bounds():
    study = StudyConfig.model_validate({"base": {}})
    assert (study.n_cycles, study.order, study.seed, study.gap_seconds) == (1, "interleave", 0, 0)
    ok = StudyConfig.model_validate({"n_cycles": 1000, "order": "shuffle", "seed": 3, "gap_seconds": 3600})
    assert ok.n_cycles == 1000 and ok.gap_seconds == 3600
    for bad in ({"n_cycles": 0}, {"n_cycles": 1001}, {"order": "random"}, {"gap_seconds": -1},
                {"gap_seconds": 3601}):
        with pytest.raises(ValidationError):
            StudyConfig.model_validate(bad)


def test_the_python_api_refuses_a_huge_sweep_before_expanding_it(tmp_path):
    import llenergymeasure
    from llenergymeasure.errors import ConfigError

    study = {"name": "big", "base": {"model": str(tmp_path)}, "sweep": {"seed": list(range(200)),
                                                                        "n_prompts": list(range(1, 101))}}
    with pytest.raises(ConfigError, match="at most 10,000"):
        llenergymeasure.run_study(study, output=tmp_path / "r")
    assert not (tmp_path / "r").exists()
