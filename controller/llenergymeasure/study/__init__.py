"""Studies: several experiments from one file (a base, sweep axes, explicit points), each run ``n_cycles`` times,
one run after another, with per-point statistics over the cycles."""

from llenergymeasure.study.aggregate import PointAggregate, aggregate_point, cv_warnings, describe, to_csv
from llenergymeasure.study.config import StudyConfig, expand_study, is_study, load_study, schedule
from llenergymeasure.study.execute import StudyOutcome, execute_study

__all__ = ["PointAggregate", "StudyConfig", "StudyOutcome", "aggregate_point", "cv_warnings", "describe",
           "expand_study", "execute_study", "is_study", "load_study", "schedule", "to_csv"]
