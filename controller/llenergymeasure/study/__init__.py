"""Studies: several experiments from one file (a base, sweep axes, explicit points), each run ``n_cycles`` times in
a chosen order, tracked in a crash-safe manifest (resumable), with per-point statistics over the cycles."""

from llenergymeasure.config.study import StudyConfig, expand_study, is_study, load_study, unused_flags
from llenergymeasure.study.aggregate import PointAggregate, aggregate_point, cv_warnings, to_csv
from llenergymeasure.study.execute import (
    StudyInterrupted,
    StudyObserver,
    StudyOptions,
    StudyOutcome,
    execute_study,
)
from llenergymeasure.study.manifest import Manifest, ManifestEntry
from llenergymeasure.study.order import schedule, williams_rows

__all__ = ["Manifest", "ManifestEntry", "PointAggregate", "StudyConfig", "StudyInterrupted", "StudyObserver",
           "StudyOptions", "StudyOutcome", "aggregate_point", "cv_warnings", "expand_study",
           "execute_study", "is_study", "load_study", "schedule", "to_csv", "unused_flags", "williams_rows"]
