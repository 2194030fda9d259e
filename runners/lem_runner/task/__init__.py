"""Task accuracy, scored on the run's engine after the energy window (docs/method.md, "Task accuracy"):
``score_task(task, loglikelihood)`` picks the scorer the config names."""

from __future__ import annotations

import time
from collections.abc import Callable

from lem_runner.contract.task import TaskConfig, TaskScore

#: (context, continuation) pairs -> (summed log-likelihood, is_greedy) each: the backend's scoring hook
Loglikelihood = Callable[[list[tuple[str, str]]], list[tuple[float, bool]]]


def score_task(task: TaskConfig, loglikelihood: Loglikelihood, clock: Callable[[], float] = time.perf_counter
               ) -> TaskScore:
    t0 = clock()
    if task.harness == "lm_eval":
        from lem_runner.task.harness import lm_eval_score

        fields = lm_eval_score(task, loglikelihood)
    else:
        from lem_runner.task.builtin import builtin_score

        fields = builtin_score(task, loglikelihood)
    return TaskScore(**fields, scorer=task.harness, duration_s=clock() - t0)
