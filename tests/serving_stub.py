"""A stub OpenAI-compatible completions server on loopback (aiohttp), for testing the load generator over real
sockets. It is a fake at a protocol seam — the OpenAI streaming protocol — and is paired with the real servers
(the transformers server in test_serving_pytorch.py, vLLM's in tests/docker/test_serving_vllm.py).

It streams ``max_tokens`` chunks, one token each (text `` r<request number>t<i>``), ``token_delay_s`` apart after
``ttft_s``, then a usage-only chunk (include_usage), like vLLM with continuous_usage_stats. With ``slots`` it has a
known service capacity: at most ``slots`` requests are answered at once (the rest wait in arrival order, FIFO), each
holding its slot for exactly ``ttft_s + (max_tokens - 1) x token_delay_s`` (tokens at absolute deadlines from the
slot's start, so sleep overshoot does not accumulate): the capacity of the SLO search's benchmark and tests is
computable from these alone. Special prompts misbehave on purpose: ``"hang"`` never
answers, ``"malformed"`` sends a chunk that is not JSON, ``"http500"`` answers with an error status. With
``reasoning_tokens`` it streams like vLLM behind a reasoning parser: the first ``reasoning_tokens`` chunks carry
their token in ``reasoning_content`` with empty ``text``, the rest answer text (a request with fewer ``max_tokens``
never reaches its answer). ``POST /v1/chat/completions`` streams the same tokens as vLLM's chat route does: an
opening chunk ``delta: {role: assistant, content: ""}`` (usage 0 tokens), then each token in ``delta.reasoning`` (the
first ``reasoning_tokens``) or ``delta.content``; its prompt, recorded like a completion's, is the ``messages``.

``/metrics`` gives vLLM's two load gauges (Prometheus text, with vLLM's labels): requests being answered as
``vllm:num_requests_running``, and ``vllm:num_requests_waiting`` 0; ``POST /reset_prefix_cache`` counts its calls in
``resets`` and answers ``reset_status`` with vLLM's body, ``{"success": reset_success}``. ``events`` records resets
and completion requests (with their prompts) in the order they arrived. ``GET /answers`` returns ``answers`` as JSON
(for a stub in its own process: bench/conversations.py; its perf_counter stamps are CLOCK_MONOTONIC, the client's
clock too).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

from aiohttp import web


class StubServer:
    def __init__(self, ttft_s: float = 0.0, token_delay_s: float = 0.0, slots: int | None = None,
                 reasoning_tokens: int = 0) -> None:
        self.ttft_s, self.token_delay_s, self.slots = ttft_s, token_delay_s, slots
        self.reasoning_tokens = reasoning_tokens
        self._slot_gate: asyncio.Semaphore | None = None
        self.arrivals: list[float] = []  # loop.time() of each request's arrival at the server
        self.peers: dict[str, list[int]] = {"models": [], "completions": []}  # client port of each request, by route
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self.in_flight = 0
        self.resets = 0
        self.events: list[tuple[str, object]] = []  # ("reset", None) and ("completion", prompt), in arrival order
        self.reset_status = 200
        self.reset_success = True
        # per completion request, in arrival order: (prompt, streamed answer text, perf_counter at its arrival,
        # perf_counter after its last token and usage, just before [DONE]) -- a multi-turn test's truth of what each
        # next prompt must hold
        self.answers: list[tuple[object, str, float, float]] = []
        self.numbered = 0
        self.routes: list[str] = []  # the path of each completion request, in arrival order

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        try:
            if self._slot_gate is None:
                return await self._answer(request)
            async with self._slot_gate:
                return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _pause(self, start: float, offset: float, relative: float) -> None:
        """Wait ``relative`` seconds, or (with slots) until ``start + offset`` on the loop's clock."""
        if self.slots is None:
            if relative:
                await asyncio.sleep(relative)
            return
        await asyncio.sleep(max(0.0, start + offset - asyncio.get_running_loop().time()))

    async def _metrics(self, request: web.Request) -> web.Response:
        labels = '{engine="0",model_name="stub"}'
        return web.Response(text=f"# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
                                 f"# TYPE vllm:num_requests_running gauge\n"
                                 f"vllm:num_requests_running{labels} {float(self.in_flight)}\n"
                                 f"# TYPE vllm:num_requests_waiting gauge\n"
                                 f"vllm:num_requests_waiting{labels} 0.0\n"
                                 f"vllm:prompt_tokens_total{labels} 123.0\n")

    async def _reset(self, request: web.Request) -> web.Response:
        self.resets += 1
        self.events.append(("reset", None))
        return web.json_response({"success": self.reset_success}, status=self.reset_status)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.arrivals.append(asyncio.get_running_loop().time())
        arrived = time.perf_counter()
        self.peers["completions"].append(request.transport.get_extra_info("peername")[1])
        body = await request.json()
        self.routes.append(request.path)
        chat = "messages" in body
        prompt, n = (body["messages"] if chat else body.get("prompt")), int(body.get("max_tokens", 16))
        if chat:
            words = " ".join(str(m.get("content", "")) for m in prompt)
            prompt = prompt[-1].get("content") if prompt[-1].get("content") in ("hang", "http500", "malformed") \
                else prompt
        self.events.append(("completion", prompt))
        if prompt == "hang":
            await asyncio.sleep(3600)
        if prompt == "http500":
            return web.json_response({"error": "boom"}, status=500)
        n_in = len(words.split()) if chat else len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
        self.numbered += 1
        number, text = self.numbered, []
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        start = asyncio.get_running_loop().time()
        await resp.prepare(request)
        if chat:  # vLLM's chat stream opens with the role, before any token
            opening = {"id": "x", "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                "usage": {"prompt_tokens": n_in, "completion_tokens": 0, "total_tokens": n_in}}
            await resp.write(f"data: {json.dumps(opening)}\n\n".encode())
        await self._pause(start, self.ttft_s, self.ttft_s)
        for i in range(n):
            if i:
                await self._pause(start, self.ttft_s + i * self.token_delay_s, self.token_delay_s)
            if prompt == "malformed" and i == 1:
                await resp.write(b"data: {not json\n\n")
                continue
            token = f" r{number}t{i}"  # distinct per request
            choice = {"index": 0, "text": token, "finish_reason": "length" if i == n - 1 else None}
            if chat:
                del choice["text"]
                choice["delta"] = {"reasoning": token} if i < self.reasoning_tokens else {"content": token}
            elif i < self.reasoning_tokens:
                choice.update(text="", reasoning_content=token)
            if i >= self.reasoning_tokens:
                text.append(token)
            chunk = {"id": "x", "object": "chat.completion.chunk" if chat else "text_completion", "choices": [choice],
                "usage": {"prompt_tokens": n_in, "completion_tokens": i + 1, "total_tokens": n_in + i + 1}}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {"prompt_tokens": n_in, "completion_tokens": n, "total_tokens": n_in + n}
        await resp.write(f"data: {json.dumps({'id': 'x', 'choices': [], 'usage': usage})}\n\n".encode())
        # recorded before [DONE]: a client that has its whole answer finds it here (after [DONE] it could look first)
        self.answers.append((prompt, "".join(text), arrived, time.perf_counter()))
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def _models(self, request: web.Request) -> web.Response:
        self.peers["models"].append(request.transport.get_extra_info("peername")[1])
        return web.json_response({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _arrivals(self, request: web.Request) -> web.Response:
        return web.json_response(self.arrivals)

    async def _answers(self, request: web.Request) -> web.Response:
        return web.json_response(self.answers)

    def start(self) -> StubServer:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            if self.slots is not None:
                self._slot_gate = asyncio.Semaphore(self.slots)
            app = web.Application()
            app.router.add_post("/v1/completions", self._completions)
            app.router.add_post("/v1/chat/completions", self._completions)
            app.router.add_get("/health", self._health)
            app.router.add_get("/v1/models", self._models)
            app.router.add_get("/arrivals", self._arrivals)
            app.router.add_get("/answers", self._answers)
            app.router.add_get("/metrics", self._metrics)
            app.router.add_post("/reset_prefix_cache", self._reset)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            self._loop.run_until_complete(web.SockSite(self._runner, sock).start())
            self._ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def slot_capacity(slots: int, service_s: float, n: int, good_share: float, ttft_bound_s: float,
                  base_ttft_s: float) -> float:
    """The true capacity of a ``slots`` stub at a TTFT SLO, by direct simulation: the highest constant rate (requests
    ``k / rate`` apart, ``n`` of them) at which at least ``good_share`` of the requests get their first token within
    ``ttft_bound_s`` — each served FIFO by the first free slot for ``service_s``, its TTFT its wait for a slot plus
    ``base_ttft_s``. The good share falls with the rate, so the rate is bisected to 1e-6 relative."""

    def share(rate: float) -> float:
        free = [0.0] * slots
        good = 0
        for k in range(n):
            arrival = k / rate
            slot = min(range(slots), key=free.__getitem__)
            start = max(arrival, free[slot])
            free[slot] = start + service_s
            good += start - arrival + base_ttft_s <= ttft_bound_s
        return good / n

    low, high = 1e-3, 1e6
    while (high - low) / low > 1e-6:
        mid = (low * high) ** 0.5
        low, high = (mid, high) if share(mid) >= good_share else (low, mid)
    return low


if __name__ == "__main__":  # as its own process (bench/serving.py): prints its port, serves until killed
    import sys
    import time

    # optional arguments: ttft_s token_delay_s (bench/conversations.py)
    server = StubServer(*(float(a) for a in sys.argv[1:3])).start()
    print(server.port, flush=True)
    sys.stdout.close()
    while True:
        time.sleep(3600)
