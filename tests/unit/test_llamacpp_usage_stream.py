"""The llamacpp server's usage middleware at its ASGI seam: a stream whose events arrive split across body messages
keeps every event whole and in order, gains one usage chunk (prompt tokens from the counter) just before [DONE], and a
request that asks for no usage, or another route, passes through untouched. Paired with the real server in
tests/integration/test_llamacpp_backend.py (input tokens vs llama-cpp-python's own count)."""

from __future__ import annotations

import asyncio
import json

from lem_runner.backends.llamacpp.usage_server import StreamUsage

EVENTS = [b'data: {"id": "c1", "choices": [{"text": " a", "finish_reason": null}]}\n\n',
          b": ping - 2026-12-07\n\n",
          b'data: {"id": "c1", "choices": [{"text": "", "finish_reason": "length"}]}\n\n', b"data: [DONE]\n\n"]


async def _app(scope, receive, send):  # a streaming server answering in uneven pieces
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    stream = b"".join(EVENTS)
    for a, b in ((0, 7), (7, 90), (90, 140), (140, len(stream))):
        await send({"type": "http.response.body", "body": stream[a:b], "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _call(body: dict, path: str = "/v1/completions") -> bytes:
    sent = []

    async def receive():
        return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}

    async def send(message):
        sent.append(message)

    app = StreamUsage(_app, lambda prompt: len(prompt.split()) + 1)
    asyncio.run(app({"type": "http", "path": path, "method": "POST"}, receive, send))
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_a_usage_chunk_with_the_prompt_count_comes_just_before_done_and_every_event_stays_whole():
    out = _call({"prompt": "three little words", "stream": True, "stream_options": {"include_usage": True}})
    events = out.split(b"\n\n")[:-1]
    assert [e + b"\n\n" for e in events[:3]] == EVENTS[:3] and events[-1] == b"data: [DONE]"
    usage = json.loads(events[3][len(b"data: "):])
    assert usage == {"id": "c1", "object": "text_completion", "choices": [], "usage": {"prompt_tokens": 4}}


def test_no_usage_asked_or_another_route_passes_through():
    assert _call({"prompt": "x", "stream": True}) == b"".join(EVENTS)
    assert _call({"prompt": "x", "stream": True, "stream_options": {"include_usage": True}},
                 path="/v1/models") == b"".join(EVENTS)
