"""The PyTorch path's server: transformers' own continuous batching (``ContinuousBatchingManager``, paged KV cache,
one scheduler thread) behind a small OpenAI-compatible ``/v1/completions`` route on loopback (aiohttp).

Why not ``transformers serve``: it needs the serving extras (FastAPI, uvicorn, the openai package) in every image,
and it is a chat-first CLI whose engine options lem cannot set one by one; the batching engine is the same
continuous-batching code either way. This module is started as its own process (``python -m
lem_runner.backends.pytorch.transformers_server``, the command from server.py beside it), so it is launched,
health-checked, logged and killed like vLLM's server.

``GET /metrics`` gives ``lem:num_requests_running`` (requests added and not yet finished or cancelled), in
Prometheus' text format as vLLM's gauges are, so an engine session can tell the server is idle before its next run.
``GET /v1/models`` carries ``lem_settings`` (the loaded dtype, device, batching settings) for the result.

Decoding: the server samples as it was started (``--do-sample --temperature --top-p --top-k --seed``, the config's
``decoding`` and ``seed``, from server.py): transformers' continuous batching decodes every request with one
generation config. A request asking for other decoding (another temperature, top_p, top_k or seed, a penalty, min_p,
or ``min_tokens`` without ``ignore_eos``) is answered 400 naming the field, never served with settings it did not ask
for: the recorded config must be what ran.

Streaming: each engine step's new tokens for a request become one chunk, with ``usage`` (prompt and cumulative
completion tokens) on every chunk and a usage-only chunk at the end, as vLLM does with ``continuous_usage_stats``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid


def _load(args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":  # the scheduler thread and torch's pool fight over few cores: measured 10x slower otherwise
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    dtype = "auto" if args.dtype == "auto" else getattr(torch, args.dtype)
    torch.manual_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(device).eval()
    sampling = {"temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k} if args.do_sample else {}
    gen = GenerationConfig(max_new_tokens=args.max_tokens, do_sample=args.do_sample, eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                           **sampling)
    cb_kwargs = {"max_requests_per_batch": args.max_batch, "use_async_batching": False, "seed": args.seed}
    if device == "cpu":
        cb_kwargs.update(page_size=16, num_blocks=args.cpu_blocks, max_batch_tokens=512)
    manager = model.init_continuous_batching(generation_config=gen,
                                             continuous_batching_config=ContinuousBatchingConfig(**cb_kwargs))
    manager.start()
    settings = {"dtype": str(model.dtype).removeprefix("torch."), "device": device, "do_sample": args.do_sample,
                **sampling, **({"seed": args.seed} if args.do_sample else {}),
                "attn_implementation": getattr(model.config, "_attn_implementation", None),
                "torch_threads": torch.get_num_threads(), **cb_kwargs, "max_tokens": args.max_tokens}
    return tok, manager, settings


#: request fields the server cannot apply, at the value that asks nothing of it
_NOT_APPLIED = {"repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "min_p": 0.0}


def decoding_refusal(body: dict, args) -> str | None:
    """Why the request asks for decoding other than the server's (started from the config), or None: then what it
    asks is what runs. Absent fields take the server's values; greedy is ``temperature`` 0 (OpenAI's convention)."""
    def given(key):
        return body.get(key) is not None

    own = "it samples with the decoding it was started with" if args.do_sample else "it decodes greedily"
    started = {"temperature": args.temperature if args.do_sample else 0.0, "top_p": args.top_p if args.do_sample
               else 1.0, "top_k": args.top_k if args.do_sample else 0}
    for key, value in started.items():
        if given(key):
            asked = body[key]
            same = float(asked) == float(value) or (key == "top_k" and value == 0 and int(asked) in (-1, 0))
            if not same:
                return f"{key} {asked}: lem's transformers server was started with {key} {value} ({own})"
    if args.do_sample and given("seed") and int(body["seed"]) != args.seed:
        return f"seed {body['seed']}: lem's transformers server was started with seed {args.seed}"
    for key, neutral in _NOT_APPLIED.items():
        if given(key) and float(body[key]) != neutral:
            return f"{key} {body[key]}: not applied by lem's transformers server (transformers' continuous batching)"
    if given("min_tokens") and int(body["min_tokens"]) > 0:
        if not body.get("ignore_eos") or int(body["min_tokens"]) < int(body.get("max_tokens") or args.max_tokens):
            return ("min_tokens: lem's transformers server applies a minimum length only as ignore_eos with "
                    "min_tokens = max_tokens")
    return None


def _chunk(rid: str, text: str, finish: str | None, n_in: int, n_out: int, model: str) -> bytes:
    body = {"id": rid, "object": "text_completion", "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish}],
            "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}}
    return f"data: {json.dumps(body)}\n\n".encode()


def build_app(tok, manager, served_name: str, default_max_tokens: int, args, settings: dict | None = None):
    from aiohttp import web

    running = [0]  # requests handed to the manager and not yet finished or cancelled

    async def metrics(request):
        text = ("# HELP lem:num_requests_running Requests in the batching engine (running or queued).\n"
                "# TYPE lem:num_requests_running gauge\n"
                f"lem:num_requests_running {running[0]}\n")
        return web.Response(text=text, content_type="text/plain")

    async def health(request):
        return web.Response(text="ok") if manager.is_running() else web.Response(status=503, text="engine stopped")

    async def models(request):
        card = {"id": served_name, "object": "model", **({"lem_settings": settings} if settings else {})}
        return web.json_response({"object": "list", "data": [card]})

    async def completions(request):
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": {"message": "body is not JSON"}}, status=400)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and not isinstance(prompt[0], int):
            prompt = prompt[0]
        if isinstance(prompt, str):
            ids = tok(prompt, add_special_tokens=True)["input_ids"]
        elif isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            ids = list(prompt)
        else:
            return web.json_response({"error": {"message": "prompt must be a string or a list of token ids"}},
                                     status=400)
        refusal = decoding_refusal(body, args)
        if refusal:
            return web.json_response({"error": {"message": refusal, "type": "invalid_request_error"}}, status=400)
        max_tokens = int(body.get("max_tokens") or default_max_tokens)
        rid = f"cmpl-{uuid.uuid4().hex[:16]}"
        queue: asyncio.Queue = asyncio.Queue()
        manager.register_result_handler(rid, queue.put_nowait)
        eos = -1 if body.get("ignore_eos") else None
        running[0] += 1
        manager.add_request(ids, request_id=rid, max_new_tokens=max_tokens, streaming=True, eos_token_id=eos)
        sent = 0
        tokens: list[int] = []
        resp = None
        try:
            if body.get("stream"):
                resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
                await resp.prepare(request)
            while True:
                out = await queue.get()
                tokens = list(out.generated_tokens)
                done = out.is_finished()
                if resp is not None and len(tokens) > sent:
                    finish = ("length" if len(tokens) >= max_tokens else "stop") if done else None
                    await resp.write(_chunk(rid, tok.decode(tokens[sent:]), finish, len(ids), len(tokens),
                                            served_name))
                    sent = len(tokens)
                if done:
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            manager.cancel_request(rid)
            raise
        finally:
            running[0] -= 1
        if resp is None:
            return web.json_response({"id": rid, "object": "text_completion", "model": served_name,
                                      "choices": [{"index": 0, "text": tok.decode(tokens), "finish_reason": "length"}],
                                      "usage": {"prompt_tokens": len(ids), "completion_tokens": len(tokens),
                                                "total_tokens": len(ids) + len(tokens)}})
        if body.get("stream_options", {}).get("include_usage"):
            usage = {"prompt_tokens": len(ids), "completion_tokens": len(tokens), "total_tokens": len(ids) + len(tokens)}
            await resp.write(f"data: {json.dumps({'id': rid, 'choices': [], 'usage': usage})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/completions", completions)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lem_runner.backends.pytorch.transformers_server",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", default="lem")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--max-batch", type=int, default=32, help="requests scheduled together")
    parser.add_argument("--max-tokens", type=int, default=64, help="default max_tokens")
    parser.add_argument("--cpu-blocks", type=int, default=1024, help="KV cache pages on CPU (16 tokens each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--do-sample", action="store_true", help="sample (else greedy)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0, help="0 disables top-k")
    args = parser.parse_args(argv)

    from aiohttp import web

    tok, manager, settings = _load(args)
    print(f"transformers continuous batching ready on {args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        web.run_app(build_app(tok, manager, args.served_model_name, args.max_tokens, args, settings), host=args.host,
                    port=args.port, access_log=None, print=None, shutdown_timeout=2)
    finally:
        manager.stop(block=True, timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
