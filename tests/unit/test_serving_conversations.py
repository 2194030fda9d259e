"""Multi-turn conversations (serving.conversations) against the stub server over real sockets: each turn's prompt
holds the whole history in order — the user messages and the answers the server actually streamed — and the think
time between an answer and the next turn is respected; energy per turn and per conversation sums the requests'
attributed energies (known power); bad sections are refused."""

from __future__ import annotations

import numpy as np
import pytest
from lem_runner.contract.serving import ServingConfig, SLOConfig
from lem_runner.serving.client import LoadSpec
from lem_runner.serving.conversations import (
    conversation_figures,
    plain_prompt,
    plan_conversations,
    run_conversations,
)
from lem_runner.serving.figures import serving_figures
from lem_runner.serving.records import RequestRecord
from pydantic import ValidationError
from serving_scenarios import piecewise_power, reading_of
from serving_stub import StubServer

THINK_S = 0.05


def _spec(url: str, clients: int | None = None) -> LoadSpec:
    return LoadSpec(url, "stub", clients, None, 30.0, False, {"temperature": 0.0})


@pytest.mark.parametrize("clients", [None, 2])
def test_each_turn_sends_the_whole_history_after_the_think_time(clients):
    cfg = ServingConfig(arrival="concurrency" if clients else "poisson", rate=None if clients else 20.0,
                        concurrency=clients,
                        conversations={"n_conversations": 4, "turns": 3, "user_tokens": {"value": 5},
                                       "answer_tokens": {"value": 3}, "think_time": {"value": THINK_S}})
    convs = plan_conversations(cfg.conversations, cfg.arrival, cfg.rate, 1.0, 16, seed=1)
    with StubServer(ttft_s=0.003, token_delay_s=0.002) as stub:
        records, _ = run_conversations(_spec(stub.base_url, clients), convs, plain_prompt)
        answers = list(stub.answers)
    assert len(records) == 12 and all(r.ok for r in records)
    # truth from the server's side: what it was sent, what it streamed back, when
    for c in convs:
        mine = [a for a in answers if f"c{c.id}t0 " in a[0]]
        assert len(mine) == 3
        history = []
        for k, (prompt, text, arrived, _) in enumerate(mine):
            history.append(("user", c.users[k]))
            expected = "".join(f"{'User' if r == 'user' else 'Assistant'}: {t}\n" for r, t in history)
            assert prompt == expected + "Assistant:", (c.id, k)
            assert prompt.index(c.users[0]) < (prompt.index(mine[k - 1][1]) if k else len(prompt))
            history.append(("assistant", text))
            if k:  # the next turn reached the server no sooner than the last answer's end + think time
                assert arrived - mine[k - 1][3] >= THINK_S - 0.001
    # lag = actual send - (previous answer's arrival + think), from the client's records, computed here
    by_conv = {}
    for r in records:
        by_conv.setdefault(r.conversation_id, []).append(r)
    lags = sorted((rs[k].submit - (rs[k - 1].end + THINK_S)) * 1000 for rs in by_conv.values()
                  for k in range(1, len(rs)))
    # correctness only: no turn sent before its think time was over (how small the lag is, p99 <= 5 ms, is a
    # measured target: bench/conversations.py, in BENCHMARKS.md)
    assert len(lags) == 8 and lags[0] >= 0, lags
    f = conversation_figures(records, "plain")
    assert f.n_conversations == 4 and f.n_complete == 4 and [t.turn for t in f.by_turn] == [0, 1, 2]
    assert f.think_lag_p50_ms == pytest.approx(np.percentile(lags, 50), abs=1e-6)
    assert f.think_lag_p99_ms == pytest.approx(np.percentile(lags, 99), abs=1e-6)
    # the history grows: the server's usage counts more prompt words each turn
    ins = [t.input_tokens_mean for t in f.by_turn]
    assert ins[0] < ins[1] < ins[2]
    assert f.energy_per_conversation_mean_j is None and f.by_turn[0].energy_j is None  # no energy measured


def _rec(i, conv, turn, a, b, tokens=4):
    r = RequestRecord(i, None, a, first_token=a + 0.01, end=b, input_tokens=10, output_tokens=tokens,
                      status="ok", conversation_id=conv, turn=turn)
    r.chunk_times = [a + 0.01 + (b - a - 0.01) * k / (tokens - 1) for k in range(tokens)]
    r.chunk_tokens = [1] * tokens
    return r


def test_energy_per_conversation_and_turn_sums_the_request_attribution():
    # 100 W constant; conversation 0: turns at [0, 1] and [1.5, 2.5] (0.5 s of think, nothing in flight);
    # conversation 1: one turn at [3, 3.5]. Nothing overlaps, so each request's energy is 100 W x its span and the
    # gaps (the 0.5 s think, 0.5 s before conversation 1) are idle: truth 200 J and 50 J; idle 100 J.
    recs = [_rec(0, 0, 0, 0.0, 1.0), _rec(1, 0, 1, 1.5, 2.5), _rec(2, 1, 0, 3.0, 3.5)]
    reading = reading_of(piecewise_power([0.0, 10.0], [100.0]), 4.0)
    s = serving_figures(recs, arrival="concurrency", offered_rate=None, clients=1, slo=SLOConfig(),
                        energy_between=reading.energy_between, energy_reason=None, baseline_w=None,
                        step_s=reading.resolution_s())
    f = conversation_figures(recs, "plain")
    assert s.idle_energy_j == pytest.approx(100.0, rel=1e-3)
    assert f.by_turn[0].energy_j == pytest.approx(150.0, rel=1e-3)
    assert f.by_turn[1].energy_j == pytest.approx(100.0, rel=1e-3)
    assert f.energy_per_conversation_mean_j == pytest.approx(125.0, rel=1e-3)
    assert f.duration_mean_s == pytest.approx((2.5 + 0.5) / 2)


@pytest.mark.parametrize("section, field", [
    ({"think_time": {"dist": "exponential"}}, "think_time dist 'exponential' needs mean"),
    ({"think_time": {"dist": "lognormal", "mean": 1.0}}, "needs sigma"),
    ({"think_time": {"dist": "uniform", "min": 2, "max": 1}}, "exceeds max"),
    ({"turns": 0}, "turns must be between"),
])
def test_a_think_time_without_its_parameters_is_refused(section, field):
    with pytest.raises(ValidationError, match=field):
        ServingConfig(rate=1.0, conversations=section)


def test_a_template_that_writes_its_own_bos_is_sent_without_it_when_the_tokenizer_adds_one(tmp_path, tiny_model_path):
    # the server tokenizes the completions prompt with its special tokens (vLLM: add_special_tokens), as the chat
    # route does not: a template that writes BOS on a tokenizer that adds one would reach the model with two
    import shutil

    from lem_runner.serving.conversations import Templater
    from tokenizers import processors
    from transformers import AutoTokenizer

    model = tmp_path / "m"
    shutil.copytree(tiny_model_path, model)
    tok = AutoTokenizer.from_pretrained(model)
    tok._tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[
        ("<s>", tok.bos_token_id)])
    tok.chat_template = "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    tok.save_pretrained(model)
    tok = AutoTokenizer.from_pretrained(model)
    assert tok("hi")["input_ids"][0] == tok.bos_token_id  # this tokenizer adds BOS itself
    prompt = Templater(str(model))([("user", "hello"), ("assistant", "hi"), ("user", "again")])
    ids = tok(prompt)["input_ids"]
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    assert prompt.endswith("[user] again\n") and "[assistant] hi" in prompt


def test_on_the_chat_route_the_history_goes_as_messages_holding_the_answers_not_the_reasoning():
    from dataclasses import replace

    cfg = ServingConfig(arrival="poisson", rate=20.0,
                        conversations={"n_conversations": 2, "turns": 3, "user_tokens": {"value": 4},
                                       "answer_tokens": {"value": 5}})
    convs = plan_conversations(cfg.conversations, cfg.arrival, cfg.rate, 1.0, 16, seed=3)
    with StubServer(ttft_s=0.002, token_delay_s=0.001, reasoning_tokens=2) as stub:
        records, _ = run_conversations(replace(_spec(stub.base_url), chat=True), convs, plain_prompt)
        answers, routes = list(stub.answers), list(stub.routes)
    assert len(records) == 6 and all(r.ok for r in records) and set(routes) == {"/v1/chat/completions"}
    assert all((r.reasoning_tokens, r.answer_tokens) == (2, 3) for r in records)
    for c in convs:
        mine = [a for a in answers if a[0][0]["content"] == c.users[0]]
        assert len(mine) == 3
        history: list[dict] = []
        for k, (messages, text, _, _) in enumerate(mine):
            history.append({"role": "user", "content": c.users[k]})
            assert messages == history, (c.id, k)  # the whole history, in order, as messages
            assert [w.split("t")[1] for w in text.split()] == ["2", "3", "4"]  # tokens 0, 1 were the reasoning
            history.append({"role": "assistant", "content": text})
