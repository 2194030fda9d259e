"""Studies: several experiments from one file (a base, sweep axes, explicit points), run one after another."""

from llenergymeasure.study.config import StudyConfig, expand_study, is_study, load_study
from llenergymeasure.study.execute import StudyOutcome, execute_study

__all__ = ["StudyConfig", "StudyOutcome", "expand_study", "execute_study", "is_study", "load_study"]
