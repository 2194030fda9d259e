"""Multi-turn conversations (serving.conversations): the plan, the turn-by-turn driver, and the figures per turn
and per conversation.

Each turn's prompt is the whole history — the earlier user messages and the model's answers as they were streamed
back — plus the new user message, rendered by the model's chat template where its tokenizer has one (sent as text
to the completions route, so every server lem drives takes it the same way), else plain concatenation with role
labels. On the chat route (a server that separates reasoning there: vllm.reasoning_parser) the history goes as
messages and the server applies the template; the history holds each answer's text, not its reasoning. A later
turn's ``scheduled`` is the previous answer's end + its think time, so the scheduling lag of the request figures
covers think time too (``think_lag_*``). A turn that fails ends its conversation.
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from lem_runner.contract.conversation import (
    CHAT_ROUTE,
    PLAIN,
    TEMPLATED,
    WORDS,
    ConversationConfig,
    ConversationFigures,
    ThinkTime,
    TurnFigures,
    leading_bos,
    plain_prompt,  # noqa: F401  (re-exported: tests and bench/conversations.py import it from here)
    render_history,
)
from lem_runner.measurement.latency import percentile
from lem_runner.serving.client import Clock, LoadSpec, _at, _body, _one, _warm
from lem_runner.serving.planned import PlannedRequest
from lem_runner.serving.records import RequestRecord
from lem_runner.serving.schedule import arrival_offsets, draw_length


@dataclass(frozen=True)
class Conversation:
    id: int
    arrival_s: float | None  # open loop: its first turn's offset; None in a closed loop
    users: list[str]  # the user messages, in order
    max_tokens: list[int]  # per turn
    think_s: list[float]  # after each turn's answer (the last one unused)


def draw_think(t: ThinkTime, rng: random.Random) -> float:
    if t.dist == "fixed":
        return float(t.value)  # type: ignore[arg-type]
    if t.dist == "exponential":
        return rng.expovariate(1.0 / t.mean)  # type: ignore[operator]
    if t.dist == "uniform":
        return rng.uniform(t.min, t.max)  # type: ignore[arg-type]
    return rng.lognormvariate(math.log(t.mean), t.sigma)  # type: ignore[arg-type]


def plan_conversations(c: ConversationConfig, arrival: str, rate: float | None, burstiness: float,
                       max_output_tokens: int, seed: int, recorded: list[list[str]] | None = None,
                       duration_s: float | None = None) -> list[Conversation]:
    """Every conversation, seeded: arrivals (open loop), user messages, answer lengths and think times."""
    rng = random.Random(seed)
    arrival_rng, length_rng, think_rng = (random.Random(rng.random()) for _ in range(3))
    n = c.n_conversations
    offsets: list[float | None] = (list(arrival_offsets(arrival, rate, burstiness, n, arrival_rng, duration_s))
                                   if arrival in ("constant", "poisson", "gamma") else [None] * n)
    out = []
    for i, off in enumerate(offsets):
        if recorded:
            users = list(recorded[i % len(recorded)])
        else:
            k = c.turns if isinstance(c.turns, int) else draw_length(c.turns, length_rng)
            users = [f"c{i}t{j} " + " ".join(length_rng.choice(WORDS) for _ in range(draw_length(c.user_tokens,
                                                                                               length_rng) - 1))
                     for j in range(k)]
        mt = [draw_length(c.answer_tokens, length_rng) if c.answer_tokens else max_output_tokens for _ in users]
        out.append(Conversation(i, off, users, mt, [draw_think(c.think_time, think_rng) for _ in users]))
    return out


class Templater:
    """history (list of (role, text)) -> prompt text, by the model's chat template where it has one."""

    def __init__(self, model_path: str | None, chat_route: bool = False) -> None:
        self.chat_route = chat_route  # the server renders the history itself (messages on the chat route)
        self.tokenizer = None
        self.leading_bos = None  # the BOS text the server's tokenizer adds itself: not sent a second time
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(model_path) if model_path else None
            if tok is not None and getattr(tok, "chat_template", None):
                self.tokenizer = tok
                self.leading_bos = leading_bos(tok)
        except Exception:  # no tokenizer here (a user's endpoint, no transformers): plain labels
            self.tokenizer = None
        self.format = CHAT_ROUTE if chat_route else TEMPLATED if self.tokenizer is not None else PLAIN

    def __call__(self, history: list[tuple[str, str]]) -> str:
        # the completions route tokenizes with special tokens added (the chat route does not): a template that
        # writes BOS on a tokenizer that adds one would otherwise reach the model with two (render_history)
        return render_history(self.tokenizer, history)


async def _drive(spec: LoadSpec, convs: list[Conversation], render: Callable[[list[tuple[str, str]]], str],
                 clock: Clock, alive, on_done, on_start, on_end) -> tuple[list[RequestRecord], float]:
    import aiohttp

    records: list[RequestRecord] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(spec.timeout_s, 30))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await _warm(session, spec, spec.closed_loop_clients or min(len(convs), 32))
        gc.collect()
        gc.freeze()
        try:
            on_start()
            t0 = clock()
            stop_at = t0 + spec.duration_s if spec.duration_s is not None else None

            async def converse(c: Conversation, first_target: float | None) -> None:
                history: list[tuple[str, str]] = []
                target = first_target
                for k, user in enumerate(c.users):
                    history.append(("user", user))
                    sent = ([{"role": r, "content": t} for r, t in history] if spec.chat else render(history))
                    body = _body(spec, PlannedRequest(0, None, sent, c.max_tokens[k]))
                    if target is not None:
                        await _at(target, clock)
                    if not alive() or (k == 0 and stop_at is not None and clock() >= stop_at):
                        return
                    rec = RequestRecord(len(records), target, clock(), conversation_id=c.id, turn=k)
                    records.append(rec)
                    await _one(session, spec, body, rec, clock)
                    on_done(rec)
                    if not rec.ok:
                        return
                    history.append(("assistant", rec.text))
                    target = rec.end + c.think_s[k]  # type: ignore[operator]

            if spec.closed_loop_clients is None:
                tasks = [asyncio.create_task(converse(c, t0 + (c.arrival_s or 0.0))) for c in convs]
                await asyncio.gather(*tasks)
            else:
                queue = iter(convs)

                async def user() -> None:
                    for c in queue:
                        if (stop_at is not None and clock() >= stop_at) or not alive():
                            return
                        await converse(c, None)

                await asyncio.gather(*(user() for _ in range(spec.closed_loop_clients)))
            on_end()
        finally:
            gc.unfreeze()
    return records, t0


def run_conversations(spec: LoadSpec, convs: list[Conversation], render, clock: Clock = time.perf_counter,
                      alive=lambda: True, on_done=lambda r: None, on_start=lambda: None,
                      on_end=lambda: None) -> tuple[list[RequestRecord], float]:
    """Run every conversation turn by turn; every request's record (in send order) and the load's start."""
    return asyncio.run(_drive(spec, convs, render, clock, alive, on_done, on_start, on_end))


def _p50(xs: list[float]) -> float | None:
    return percentile(sorted(xs), 50) if xs else None


def conversation_figures(records: list[RequestRecord], prompt_format: str) -> ConversationFigures:
    """Per turn index and per conversation; energy sums the requests' attributed ``energy_j`` (null if unset)."""
    conv: dict[int, list[RequestRecord]] = {}
    for r in records:
        conv.setdefault(r.conversation_id, []).append(r)  # type: ignore[arg-type]
    lags = sorted((r.submit - r.scheduled) * 1000 for r in records if r.turn and r.scheduled is not None)
    by_turn = []
    for k in sorted({r.turn for r in records if r.turn is not None}):
        rs = [r for r in records if r.turn == k]
        ok = [r for r in rs if r.ok]
        e = [r.energy_j for r in ok if r.energy_j is not None]
        tpots = [(r.chunk_times[-1] - r.first_token) / (r.output_tokens - 1) * 1000 for r in ok
                 if r.first_token is not None and r.output_tokens > 1 and r.chunk_times]
        ins = [r.input_tokens for r in ok if r.input_tokens is not None]
        by_turn.append(TurnFigures(
            turn=k, n=len(rs), n_ok=len(ok), input_tokens_mean=sum(ins) / len(ins) if ins else None,
            ttft_p50_ms=_p50([(r.first_token - r.submit) * 1000 for r in ok if r.first_token is not None]),
            tpot_p50_ms=_p50(tpots), e2e_p50_ms=_p50([(r.end - r.submit) * 1000 for r in ok if r.end is not None]),
            energy_j=sum(e) if e and len(e) == len(ok) else None,
            energy_mean_j=sum(e) / len(e) if e and len(e) == len(ok) else None))
    complete = [rs for rs in conv.values() if all(r.ok for r in rs)]
    spans = [max(r.end for r in rs) - min(r.submit for r in rs) for rs in complete]  # type: ignore[type-var]
    energies = sorted(sum(r.energy_j for r in rs) for rs in complete  # type: ignore[misc]
                      if all(r.energy_j is not None for r in rs))
    return ConversationFigures(
        n_conversations=len(conv), n_complete=len(complete), turns_sent=len(records), prompt_format=prompt_format,
        think_lag_p50_ms=percentile(lags, 50) if lags else None, think_lag_p99_ms=percentile(lags, 99) if lags else None,
        duration_mean_s=sum(spans) / len(spans) if spans else None,
        energy_per_conversation_mean_j=sum(energies) / len(energies) if energies else None,
        energy_per_conversation_p50_j=_p50(energies), by_turn=by_turn)
