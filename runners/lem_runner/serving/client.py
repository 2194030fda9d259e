"""The load generator: sends the planned requests to an OpenAI-compatible ``/v1/completions`` route (or
``/v1/chat/completions``, the prompt as one user message, where the server separates reasoning from the answer only
there: ``LoadSpec.chat``) on schedule (open loop) or from N clients (closed loop), streams every response and records
each chunk's arrival.

aiohttp does the HTTP and the chunked transfer; server-sent events are split on their ``data:`` lines. Token counts
come from the server's ``usage`` (``stream_options: include_usage``, plus vLLM's ``continuous_usage_stats`` for a
count per chunk); a chunk without usage counts one token, and the final usage corrects the total. A request is
``ok``, ``error`` (connection refused or reset, HTTP status, malformed chunk) or ``timeout`` — never dropped.

Open-loop timing (docs/method.md, "Scheduling lag"): a request's ``submit`` is the clock read just before its
pre-serialised body is handed to ``session.post`` — the same point ``vllm bench serve`` starts its clock — and its
scheduling lag is ``submit - scheduled``. To keep the lag small the connection pool is opened before the load's start,
the next body is serialised while waiting for its arrival, the scheduler sleeps until ``SPIN_S`` before the arrival
(the event loop's timers wake up to 1 ms late: epoll's millisecond timeout) and then yields to the loop until the
arrival, and the garbage collector's objects from before the load are frozen (no full collection walks them).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from lem_runner.serving.planned import PlannedRequest
from lem_runner.serving.records import RequestRecord

Clock = Callable[[], float]

#: the scheduler stops sleeping this long before an arrival and yields to the event loop until it
SPIN_S = 0.0015
#: connections opened before an open-loop load's start (at most one per request)
WARM_CONNECTIONS = 32


@dataclass(frozen=True)
class LoadSpec:
    base_url: str  # ends in /v1
    model: str  # the served model's name
    closed_loop_clients: int | None  # None: open loop, by each request's arrival_s
    duration_s: float | None
    timeout_s: float
    ignore_eos: bool
    sampling: dict  # temperature / top_p / top_k for the request body
    chat: bool = False  # send /v1/chat/completions with messages instead of /v1/completions with a prompt

    @property
    def route(self) -> str:
        return "chat/completions" if self.chat else "completions"


class _Malformed(Exception):
    pass


def chat_messages(prompt) -> list[dict]:
    """The chat route's ``messages``: a conversation's history as given, else the prompt as one user message."""
    if isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt) and prompt:
        return prompt
    if not isinstance(prompt, str):  # refused by the config (vllm.reasoning_parser with token-id prompts)
        raise ValueError("the chat route takes text: a token-id prompt cannot be sent as a message")
    return [{"role": "user", "content": prompt}]


def _body(spec: LoadSpec, req: PlannedRequest) -> bytes:
    sent = {"messages": chat_messages(req.prompt)} if spec.chat else {"prompt": req.prompt}
    body = {"model": spec.model, **sent, "max_tokens": req.max_tokens, "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}, **spec.sampling}
    if spec.ignore_eos:
        body["ignore_eos"] = True
        body["min_tokens"] = req.max_tokens
    return json.dumps(body).encode()


#: the fields a reasoning parser streams the reasoning in, apart from the answer (vLLM: ``reasoning``, before 0.11
#: ``reasoning_content``; on a choice of /v1/completions or a chat choice's ``delta``)
REASONING_FIELDS = ("reasoning_content", "reasoning")


def _reasoning_text(choice: dict) -> str:
    delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
    return "".join(str(x.get(k) or "") for x in (choice, delta) for k in REASONING_FIELDS)


def _answer_text(choice: dict) -> str:
    """The answer text of a chunk's choice: ``text`` (completions) or the chat delta's ``content``."""
    delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
    return str(choice.get("text") or delta.get("content") or "")


def _carries_token(choice: dict) -> bool:
    """Whether a streamed choice stands for generated tokens: text, answer or reasoning in it, or (completions) a
    choice still open, whose token may decode to no text yet (part of a UTF-8 character). A chat stream's opening
    choice, ``delta: {role, content: ""}``, carries none."""
    if _answer_text(choice) or _reasoning_text(choice):
        return True
    delta = choice.get("delta")
    if isinstance(delta, dict) and "role" in delta:
        return False
    return choice.get("finish_reason") is None


def _take_chunk(rec: RequestRecord, payload: dict, now: float) -> None:
    """Fold one streamed JSON chunk into the record."""
    if not isinstance(payload, dict):
        raise _Malformed(f"chunk is not an object: {str(payload)[:80]}")
    if "error" in payload:
        raise _Malformed(f"server error in stream: {str(payload['error'])[:200]}")
    choices = payload.get("choices")
    usage = payload.get("usage")
    if choices is None and usage is None:
        raise _Malformed(f"chunk has neither choices nor usage: {json.dumps(payload)[:120]}")
    seen = sum(rec.chunk_tokens)
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        rec.input_tokens = usage["prompt_tokens"]
    counted = usage.get("completion_tokens") if isinstance(usage, dict) else None
    has_text = bool(choices) and any(_carries_token(c) for c in choices if isinstance(c, dict))
    reasoning = False
    if choices:
        answer = "".join(_answer_text(c) for c in choices if isinstance(c, dict))
        rec.text += answer
        reasoning = any(_reasoning_text(c) for c in choices if isinstance(c, dict))
        if reasoning:
            rec.reasoning_seen = True
        if answer and rec.first_answer_token is None:
            rec.first_answer_token = now
    if has_text:
        n = counted - seen if isinstance(counted, int) else 1
        if n > 0 or not isinstance(counted, int):
            rec.chunk_times.append(now)
            rec.chunk_tokens.append(max(n, 0))
            rec.chunk_reasoning.append(reasoning)
            if rec.first_token is None and n > 0:
                rec.first_token = now
    elif isinstance(counted, int) and counted > seen:  # final usage chunk: tokens the text chunks did not count
        if rec.chunk_tokens:
            rec.chunk_tokens[-1] += counted - seen
        else:
            rec.chunk_times.append(now)
            rec.chunk_tokens.append(counted - seen)
            rec.chunk_reasoning.append(False)
            rec.first_token = rec.first_token or now
    rec.output_tokens = sum(rec.chunk_tokens)


_JSON = {"Content-Type": "application/json"}


async def _one(session, spec: LoadSpec, body: bytes, rec: RequestRecord, clock: Clock) -> None:
    import aiohttp

    try:
        async with asyncio.timeout(spec.timeout_s):
            rec.submit = clock()
            async with session.post(f"{spec.base_url}/{spec.route}", data=body, headers=_JSON) as resp:
                if resp.status != 200:
                    text = (await resp.text())[:200]
                    raise _Malformed(f"HTTP {resp.status}: {text}")
                async for raw in resp.content:
                    line = raw.strip()
                    if not line or line.startswith(b":"):
                        continue
                    if not line.startswith(b"data:"):
                        raise _Malformed(f"not a server-sent event line: {line[:80]!r}")
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        break
                    try:
                        payload = json.loads(data)
                    except ValueError:
                        raise _Malformed(f"chunk is not JSON: {data[:80]!r}") from None
                    _take_chunk(rec, payload, clock())
        rec.end = clock()
        if rec.output_tokens == 0:
            rec.status, rec.error = "error", "the response carried no output token"
        else:
            rec.status = "ok"
    except TimeoutError:
        rec.end, rec.status, rec.error = clock(), "timeout", f"no complete response within {spec.timeout_s:g} s"
    except _Malformed as exc:
        rec.end, rec.status, rec.error = clock(), "error", str(exc)
    except (aiohttp.ClientError, OSError) as exc:
        rec.end, rec.status, rec.error = clock(), "error", f"{type(exc).__name__}: {exc}"[:300]


async def _warm(session, spec: LoadSpec, n: int) -> None:
    """Open ``n`` keep-alive connections (concurrent GET /v1/models; any answer will do) so the load's first requests
    do not pay for a TCP connect."""
    import aiohttp

    async def one() -> None:
        try:
            async with session.get(f"{spec.base_url}/models") as resp:
                await resp.read()
        except (aiohttp.ClientError, OSError):
            pass

    try:
        async with asyncio.timeout(min(spec.timeout_s, 10)):
            await asyncio.gather(*(one() for _ in range(n)))
    except TimeoutError:
        pass


async def _at(target: float, clock: Clock) -> None:
    """Return at ``target`` on ``clock``: sleep until SPIN_S before it, then yield to the loop until it."""
    delay = target - clock() - SPIN_S
    if delay > 0:
        await asyncio.sleep(delay)
    while clock() < target:
        await asyncio.sleep(0)


async def _drive(spec: LoadSpec, plan: list[PlannedRequest], clock: Clock, alive: Callable[[], bool],
                 on_done: Callable[[RequestRecord], None], on_start: Callable[[], None],
                 on_end: Callable[[], None]) -> tuple[list[RequestRecord], float]:
    import aiohttp

    records: list[RequestRecord] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(spec.timeout_s, 30))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await _warm(session, spec, spec.closed_loop_clients or min(len(plan), WARM_CONNECTIONS))
        gc.collect()
        gc.freeze()  # what exists now (the runner, the engine's libraries) is left out of every later collection
        try:
            on_start()  # the energy window opens here, after the connections are warm: tight around the load
            t0 = clock()
            stop_at = t0 + spec.duration_s if spec.duration_s is not None else None

            async def send(req: PlannedRequest, scheduled: float | None, body: bytes) -> None:
                rec = RequestRecord(req.index, scheduled, clock(), prefix_group=req.prefix_group)
                records.append(rec)
                await _one(session, spec, body, rec, clock)
                on_done(rec)

            if spec.closed_loop_clients is None:
                tasks = []
                for req in plan:
                    body = _body(spec, req)  # serialised while waiting for its arrival
                    target = t0 + (req.arrival_s or 0.0)
                    await _at(target, clock)
                    if not alive():
                        break
                    tasks.append(asyncio.create_task(send(req, target, body)))
                    await asyncio.sleep(0)  # the request starts now, not after the next body is built
                await asyncio.gather(*tasks)
            else:
                queue = iter(plan)

                async def client() -> None:
                    for req in queue:
                        if (stop_at is not None and clock() >= stop_at) or not alive():
                            return
                        await send(req, None, _body(spec, req))

                await asyncio.gather(*(client() for _ in range(spec.closed_loop_clients)))
            on_end()  # the last response has ended: the window closes before the session is torn down
        finally:
            gc.unfreeze()
    return sorted(records, key=lambda r: r.index), t0


#: what a warmup prompt is prefixed with (text), so no block of it matches the start of a measured prompt
WARMUP_PREFIX = "Warmup request, not measured."


def outside_plan(plan: list[PlannedRequest], n: int) -> list[PlannedRequest]:
    """``n`` warmup requests shaped like the plan's first ones (lengths, max_tokens) whose prompts share no prefix with
    any measured prompt: text gets :data:`WARMUP_PREFIX` in front, token ids their first id changed. A prefix cache
    (vLLM's hashes each block with everything before it) then holds nothing a measured request can hit."""
    out = []
    for i in range(n):
        p = plan[i % len(plan)]
        if isinstance(p.prompt, list):
            first = p.prompt[0] if p.prompt else 10
            prompt: str | list[int] = [first + 1 if first % 2 == 0 else first - 1, *p.prompt[1:]] if p.prompt else [11]
        else:
            prompt = f"{WARMUP_PREFIX} {p.prompt}"
        out.append(PlannedRequest(i, None, prompt, p.max_tokens))
    return out


def repeated_prompts(plan: list[PlannedRequest]) -> str | None:
    """A warning when the plan sends the same prompt more than once (``n_requests`` above the prompts available, or
    a length-only prompt without a vocabulary): with a prefix cache a repeat is a cache hit, not a fresh prefill."""
    distinct = {tuple(p.prompt) if isinstance(p.prompt, list) else p.prompt for p in plan}
    if len(distinct) >= len(plan):
        return None
    return (f"{len(plan)} requests share {len(distinct)} distinct prompt(s): prompts are cycled (n_requests is above "
            "the prompts available; raise n_prompts or give a dataset with more); on a server with a prefix cache "
            "(vLLM's enable_prefix_caching) a repeated prompt's prefill is a cache hit")


def run_load(spec: LoadSpec, plan: list[PlannedRequest], clock: Clock = time.perf_counter,
             alive: Callable[[], bool] = lambda: True,
             on_done: Callable[[RequestRecord], None] = lambda r: None, on_start: Callable[[], None] = lambda: None,
             on_end: Callable[[], None] = lambda: None) -> tuple[list[RequestRecord], float]:
    """Send ``plan``; return every request's record (in plan order) and the load's start on ``clock``. Stops issuing
    new requests once ``alive()`` says the server is gone. ``on_start`` runs just before the load's start (after the
    connection pool is opened), ``on_end`` just after the last response ends (the energy window's edges)."""
    return asyncio.run(_drive(spec, plan, clock, alive, on_done, on_start, on_end))
