"""Quality beside energy (issue 29): the config section ``quality`` and the result block ``quality``.

PLACEHOLDER from branch ``tasks``: it holds only the task-accuracy part (contract/task.py). Branch ``quality``
defines this module in full (fidelity, perplexity); when merging, keep theirs and add the two ``task`` fields below.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lem_runner.contract.section import Section
from lem_runner.contract.task import TaskConfig, TaskScore


class QualityConfig(Section):
    """What quality figures a run takes, all after the energy window (never inside it)."""

    task: TaskConfig | None = Field(None, description="a multiple-choice task on your data, scored on the run's "
                                    "engine after the energy window (none: no task)")


class QualityFigures(BaseModel):
    """The quality figures of one run, taken after the energy window; they never change the energy figures."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: TaskScore | None = Field(None, description="task accuracy (docs/method.md, 'Task accuracy')")
