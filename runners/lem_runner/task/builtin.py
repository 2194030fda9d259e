"""lem's own multiple-choice scorer over a JSONL, the same figures as lm-eval's ``multiple_choice`` tasks (acc,
acc_norm, acc stderr), with no dependency beyond the engine: it works in every image."""

from __future__ import annotations

import math
from pathlib import Path

from lem_runner.contract.task import TaskConfig, load_items

#: what stands between the question and a choice, as lm-eval's default target_delimiter
DELIMITER = " "


def accuracy_figures(scores: list[list[float]], choices: list[list[str]], answers: list[int]) -> dict:
    """acc (argmax of summed log-likelihood), acc_norm (argmax of log-likelihood / characters of the choice) and the
    standard error of acc (sample stdev / sqrt(n)), from each item's per-choice log-likelihoods."""
    hits = [max(range(len(s)), key=s.__getitem__) == a for s, a in zip(scores, answers)]
    norm = [max(range(len(s)), key=lambda i: s[i] / len(c[i])) == a for s, c, a in zip(scores, choices, answers)]
    n = len(hits)
    acc = sum(hits) / n
    stderr = math.sqrt(acc * (1 - acc) / (n - 1)) if n > 1 else None  # sample stdev / sqrt(n)
    return {"accuracy": acc, "accuracy_norm": sum(norm) / n, "stderr": stderr, "n_items": n}


def builtin_score(task: TaskConfig, loglikelihood) -> dict:
    items = load_items(task.path)[: task.limit]
    pairs = [(q, DELIMITER + c) for q, cs, _ in items for c in cs]
    flat = [ll for ll, _ in loglikelihood(pairs)]
    scores, i = [], 0
    for _, cs, _ in items:
        scores.append(flat[i : i + len(cs)])
        i += len(cs)
    figures = accuracy_figures(scores, [cs for _, cs, _ in items], [a for _, _, a in items])
    return {"name": Path(task.path).stem, **figures}
