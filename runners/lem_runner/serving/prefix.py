"""Shared prefixes (serving.shared_prefix): ``groups`` system prompts of ``tokens`` each, put ahead of the planned
prompts. Drawn from their own seeded generators (the seed and the group), so adding a prefix leaves the arrivals,
lengths and prompts of the plan as they were, and the same seed gives the same prefixes. Group g's prefix starts
with a token (id 10 + g, or the word ``s<g>``) no other group's has, so two groups share no cached block."""

from __future__ import annotations

import dataclasses
import random

from lem_runner.contract.shared_prefix import SharedPrefixConfig
from lem_runner.serving.planned import PlannedRequest

#: words a text prefix is drawn from (common English words: one token each in most vocabularies)
WORDS = ("the", "system", "answer", "question", "user", "model", "help", "short", "clear", "text", "world", "time",
         "people", "water", "light", "number")


def prefix_ids(sp: SharedPrefixConfig, group: int, seed: int, vocab: int) -> list[int]:
    """Group ``group``'s prefix as ``sp.tokens`` token ids in 10..vocab-10 (no special token likely)."""
    rng = random.Random(f"lem-shared-prefix-{seed}-{group}")
    first = 10 + group % max(1, vocab - 20)
    return [first] + [rng.randrange(10, vocab - 10) for _ in range(sp.tokens - 1)]


def prefix_text(sp: SharedPrefixConfig, group: int, seed: int) -> str:
    """Group ``group``'s prefix as ``sp.tokens`` words, ending in a blank line before the prompt."""
    rng = random.Random(f"lem-shared-prefix-{seed}-{group}")
    return " ".join([f"s{group}"] + [rng.choice(WORDS) for _ in range(sp.tokens - 1)]) + "\n\n"


def assign_groups(sp: SharedPrefixConfig, n: int, seed: int) -> list[int]:
    """The group of each of ``n`` requests: i mod groups, or a seeded draw."""
    if sp.assign == "round_robin":
        return [i % sp.groups for i in range(n)]
    rng = random.Random(f"lem-shared-prefix-assign-{seed}")
    return [rng.randrange(sp.groups) for _ in range(n)]


def with_shared_prefix(plan: list[PlannedRequest], sp: SharedPrefixConfig | None, seed: int,
                       vocab: int | None) -> list[PlannedRequest]:
    """``plan`` with each request's group prefix in front of its prompt (token ids ahead of token ids, words ahead
    of text; a token-id prompt without a vocabulary cannot happen: ids are drawn from it) and its group recorded."""
    if sp is None:
        return plan
    groups = assign_groups(sp, len(plan), seed)
    ids: dict[int, list[int]] = {}
    texts: dict[int, str] = {}
    out = []
    for req, g in zip(plan, groups):
        if isinstance(req.prompt, list) and vocab:
            prompt: str | list[int] = ids.setdefault(g, prefix_ids(sp, g, seed, vocab)) + req.prompt
        else:
            prompt = texts.setdefault(g, prefix_text(sp, g, seed)) + str(req.prompt)
        out.append(dataclasses.replace(req, prompt=prompt, prefix_group=g))
    return out
