"""llama-cpp-python's own OpenAI-compatible server (``llama_cpp.server``: its ``create_app`` and settings, the same
flags as ``python -m llama_cpp.server``), with the prompt-token count its stream lacks: a streamed completion that
asks for usage (``stream_options: {include_usage: true}``, as lem's load generator does) ends, before ``[DONE]``,
with a usage-only chunk as OpenAI's and vLLM's servers send it, holding ``prompt_tokens``.

``prompt_tokens`` is the prompt tokenized by the GGUF's own tokenizer (a vocab-only ``Llama`` of the same file) as
llama-cpp-python's completion does: the model's BOS (and EOS) rule, special tokens parsed
(``Llama.tokenize(add_bos=True, special=True)``); a prompt of token ids counts as its length. Known error: exact for
decoder models; llama-cpp-python puts a CLS/SEP token around the prompt of a model that has them, which this count
leaves out. ``completion_tokens`` is not given: the stream carries the sampled tokens' text only, and where a
character spans tokens the library sends them in one chunk, so a count of chunks would claim an exactness it does
not have (the load generator counts the chunks, docs/method.md says with what error). Run as
``python -m lem_runner.backends.llamacpp.usage_server <llama_cpp.server flags>``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

ROUTE = "/v1/completions"


def _wants_usage(body: bytes) -> dict | None:
    try:
        req = json.loads(body or b"{}")
    except ValueError:
        return None
    options = req.get("stream_options") if isinstance(req, dict) else None
    if not (isinstance(req, dict) and req.get("stream") and isinstance(options, dict) and options.get("include_usage")):
        return None
    return req


class StreamUsage:
    """ASGI middleware: the completions stream, event by event, with a prompt-token usage chunk before
    ``[DONE]``."""

    def __init__(self, app: Any, count_prompt: Callable[[Any], int]) -> None:
        self.app, self.count_prompt = app, count_prompt

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != ROUTE or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        messages, body = [], b""
        while True:  # the request body, kept to be replayed to the app
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        pending = list(messages)

        async def replay():
            return pending.pop(0) if pending else await receive()

        req = _wants_usage(body)
        if req is None:
            await self.app(scope, replay, send)
            return
        state = {"buffer": b"", "id": "lem-usage"}

        def event(raw: bytes) -> bytes:
            data = raw[len(b"data: "):] if raw.startswith(b"data: ") else None
            if data == b"[DONE]":
                usage = {"prompt_tokens": self.count_prompt(req.get("prompt"))}
                chunk = {"id": state["id"], "object": "text_completion", "choices": [], "usage": usage}
                return b"data: " + json.dumps(chunk).encode() + b"\n\n" + raw + b"\n\n"
            if data and state["id"] == "lem-usage":
                try:
                    state["id"] = json.loads(data).get("id", state["id"])
                except (ValueError, AttributeError):
                    pass
            return raw + b"\n\n"

        async def send_with_usage(message) -> None:
            if message["type"] != "http.response.body":
                await send(message)
                return
            *events, state["buffer"] = (state["buffer"] + message.get("body", b"")).split(b"\n\n")
            out = b"".join(event(e.lstrip(b"\r\n")) for e in events)
            more = message.get("more_body", False)
            if not more:
                out, state["buffer"] = out + state["buffer"], b""
            await send({"type": "http.response.body", "body": out, "more_body": more})

        await self.app(scope, replay, send_with_usage)


def main(argv: list[str] | None = None) -> None:
    import uvicorn
    from llama_cpp import Llama
    from llama_cpp.server.app import create_app
    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_args_from_model(parser, Settings)
    args = parser.parse_args(argv)
    server = parse_model_from_args(ServerSettings, args)
    model = parse_model_from_args(ModelSettings, args)
    vocab = Llama(model_path=model.model, vocab_only=True, verbose=False)

    def count_prompt(prompt: Any) -> int:
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if isinstance(prompt, list):
            return len(prompt)
        return len(vocab.tokenize(str(prompt).encode("utf-8"), add_bos=True, special=True))

    app = StreamUsage(create_app(server_settings=server, model_settings=[model]), count_prompt)
    uvicorn.run(app, host=server.host, port=server.port)


if __name__ == "__main__":
    main()
