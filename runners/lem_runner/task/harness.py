"""lm-evaluation-harness on lem's engine: a task YAML over local data, run offline, with an ``lm_eval.api.model.LM``
whose ``loglikelihood`` is the backend's scoring hook. Only log-likelihood tasks (multiple_choice, loglikelihood):
lem does not generate for the harness, so its decoding never enters the score."""

from __future__ import annotations

import os
from pathlib import Path

from lem_runner.contract.task import TaskConfig


def lm_eval_score(task: TaskConfig, loglikelihood) -> dict:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # local data only: the harness must not reach the hub
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import yaml
    from lm_eval import simple_evaluate
    from lm_eval.api.model import LM
    from lm_eval.tasks import TaskManager

    class _Engine(LM):
        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return loglikelihood([tuple(r.args) for r in requests])

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError("lem scores log-likelihood tasks only (multiple_choice, loglikelihood)")

        def generate_until(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError("lem scores log-likelihood tasks only (multiple_choice, loglikelihood)")

    path = Path(task.path).expanduser()
    name = yaml.safe_load(path.read_text(encoding="utf-8"))["task"]
    out = simple_evaluate(model=_Engine(), tasks=[name], task_manager=TaskManager(include_path=str(path.parent)),
                          limit=task.limit, log_samples=False)
    figures = out["results"][name]
    n = out["n-samples"][name]["effective"]
    stderr = figures.get("acc_stderr,none")
    return {"name": name, "accuracy": figures["acc,none"], "accuracy_norm": figures.get("acc_norm,none"),
            "stderr": stderr if isinstance(stderr, float) and n > 1 else None, "n_items": n}
