"""Shared prefixes (serving.shared_prefix): each request's prompt is its group's prefix, then the prompt it would have
had without one; identical within a group, distinct across groups from the first token on, reproducible from the
seed, and the rest of the plan unchanged."""

from __future__ import annotations

import pytest
from lem_runner.contract import ExperimentConfig
from lem_runner.serving.schedule import plan_requests
from pydantic import ValidationError


def _cfg(seed: int = 5, **prefix) -> ExperimentConfig:
    serving = {"rate": 2, "n_requests": 12, "input_tokens": {"dist": "uniform", "min": 3, "max": 9},
               "output_tokens": {"dist": "fixed", "value": 4}, "seed": seed}
    if prefix:
        serving["shared_prefix"] = prefix
    return ExperimentConfig(scenario="serving", serving=serving)


def test_token_id_prompts_get_their_groups_k_ids_in_front_and_keep_the_rest_of_the_plan():
    plain = plan_requests(_cfg(), ["p"], None, 512)
    shared = plan_requests(_cfg(tokens=40, groups=3), ["p"], None, 512)
    assert [r.prefix_group for r in shared] == [i % 3 for i in range(12)]  # round robin
    heads = {}
    for before, after in zip(plain, shared):
        head, tail = after.prompt[:40], after.prompt[40:]
        assert tail == before.prompt  # the prompt it would have had, after the prefix
        assert (after.arrival_s, after.max_tokens) == (before.arrival_s, before.max_tokens)
        assert heads.setdefault(after.prefix_group, head) == head  # identical within a group
        assert all(10 <= t < 502 for t in head)
    assert len({tuple(h) for h in heads.values()}) == 3
    assert len({h[0] for h in heads.values()}) == 3  # distinct from the first token: no block is shared
    # the same seed gives the same prompts; another seed other prefixes
    assert plan_requests(_cfg(tokens=40, groups=3), ["p"], None, 512) == shared
    other = plan_requests(_cfg(seed=6, tokens=40, groups=3), ["p"], None, 512)
    assert other[0].prompt[1:40] != shared[0].prompt[1:40]


def test_text_prompts_get_k_words_and_random_assignment_is_seeded():
    cfg = ExperimentConfig(scenario="serving", serving={"rate": 2, "n_requests": 30, "seed": 9,
                                                         "shared_prefix": {"tokens": 7, "groups": 4,
                                                                           "assign": "random"}})
    prompts = [f"question {i}" for i in range(30)]
    plan = plan_requests(cfg, prompts, None, None)
    groups = [r.prefix_group for r in plan]
    assert groups == [r.prefix_group for r in plan_requests(cfg, prompts, None, None)]
    assert groups != [i % 4 for i in range(30)] and set(groups) == {0, 1, 2, 3}
    for i, r in enumerate(plan):
        head, _, tail = r.prompt.partition("\n\n")
        assert tail == prompts[i] and len(head.split()) == 7 and head.split()[0] == f"s{r.prefix_group}"
    assert len({r.prompt.partition("\n\n")[0] for r in plan}) == 4


def test_shared_prefix_with_conversations_is_refused():
    with pytest.raises(ValidationError, match="shared_prefix is for single-turn"):
        ExperimentConfig(scenario="serving", serving={"rate": 1, "conversations": {"n_conversations": 2},
                                                       "shared_prefix": {"tokens": 8}})


def test_the_hit_rate_is_the_windows_increase_of_hits_over_queries_or_null_with_why():
    from lem_runner.serving.cache_metrics import CacheReading, cache_figures

    names = ("q_total", "h_total")
    # 1000 tokens looked up before the window (warmup), 600 of them found; in the window 400 more, 300 found
    f = cache_figures(CacheReading(1000, 600), CacheReading(1400, 900), names, "vllm")
    assert (f.hit_rate, f.queried_tokens, f.hit_tokens, f.reason) == (0.75, 400, 300, None)
    off = cache_figures(CacheReading(0, 0), CacheReading(0, 0), names, "vllm")
    assert off.hit_rate is None and off.queried_tokens == 0 and "prefix cache is off" in off.reason
    assert "no prefix-cache counters" in cache_figures(None, None, None, "lem's server").reason
    assert "before the window" in cache_figures(CacheReading(None, None), CacheReading(1, 1), names, "v").reason
    assert "user's endpoint" in cache_figures(None, None, None, None).reason
