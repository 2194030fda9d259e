"""The command that starts each backend's OpenAI-compatible server on loopback, from the experiment's config.

- vllm: ``python -m vllm.entrypoints.openai.api_server`` (the module entry point works in the CPU build, where the
  ``vllm`` console script does not), engine arguments from the ``vllm:`` section as its CLI flags;
  ``--enforce-eager`` on CPU (inductor needs a C++ compiler the images lack);
- pytorch: lem's transformers continuous-batching server (transformers_server.py); ``pytorch.batch_size`` caps the
  requests batched together (32 when not set: the spec's ``serving_defaults``, written into the config so the value
  survives the request's JSON round trip, where every field reads as set);
- tensorrt: ``trtllm-serve serve MODEL`` on the PyTorch workflow (its documented CLI: --host, --port, --backend,
  --max_batch_size, --max_num_tokens, --max_seq_len, --tp_size, --pp_size, --kv_cache_free_gpu_memory_fraction).
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass, field

from lem_runner.contract.config import ExperimentConfig

SERVED_NAME = "lem"


@dataclass(frozen=True)
class ServerCommand:
    name: str  # what served, for the result
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/health"
    batch_size: int | None = None  # the batch cap the server was started with (None: the server's own default)
    #: gauges on GET /metrics that count requests running or queued (all 0: the server is idle); none: it cannot say,
    #: and an engine session does not hand it to another run
    busy_metrics: tuple[str, ...] = ()
    #: POST routes that empty what one run leaves for the next (answered 200), called before a later run on the server
    reset_routes: tuple[str, ...] = ()


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def vllm_command(cfg: ExperimentConfig, model_path: str, port: int, on_cpu: bool) -> ServerCommand:
    from lem_runner.backends.vllm.backend import eager_mode, engine_args

    args = engine_args(cfg, model_path, on_cuda=not on_cpu)
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1", "--port", str(port),
            "--served-model-name", SERVED_NAME, "--disable-uvicorn-access-log"]
    for key, value in args.items():
        if key in ("enforce_eager", "enable_prefix_caching"):
            continue
        if isinstance(value, bool):  # vLLM's CLI takes booleans as --flag / --no-flag
            argv.append(_flag(key) if value else "--no-" + _flag(key)[2:])
        elif isinstance(value, (dict, list)):  # nested settings (speculative_config) as JSON, as its CLI reads them
            argv += [_flag(key), json.dumps(value)]
        else:
            argv += [_flag(key), str(value)]
    if eager_mode(cfg, not on_cpu)[0]:  # unset: eager on CPU (no compiler in the CPU image); false: compile
        argv.append("--enforce-eager")
    argv.append("--enable-prefix-caching" if cfg.vllm.enable_prefix_caching else "--no-enable-prefix-caching")
    env = {"VLLM_CPU_KVCACHE_SPACE": str(cfg.vllm.cpu_kvcache_space_gib)} if on_cpu else {}
    reset: tuple[str, ...] = ()
    if cfg.vllm.enable_prefix_caching:  # a cached prefix would serve the next run's prompts: empty it between runs
        env["VLLM_SERVER_DEV_MODE"] = "1"  # the route /reset_prefix_cache exists only in vLLM's dev mode
        reset = ("/reset_prefix_cache",)
    return ServerCommand("vllm.entrypoints.openai.api_server", argv, env, batch_size=args.get("max_num_seqs"),
                         busy_metrics=("vllm:num_requests_running", "vllm:num_requests_waiting"),
                         reset_routes=reset)


def pytorch_server_settings(cfg: ExperimentConfig) -> dict:
    """The run-level values lem's transformers server is started with (so they join a serving run's engine
    identity): its batch cap (``pytorch.batch_size``; a serving config without one takes the spec's serving default,
    32) and its default ``max_tokens``."""
    return {"max_batch": cfg.pytorch.batch_size, "max_tokens": cfg.max_output_tokens}


def pytorch_command(cfg: ExperimentConfig, model_path: str, port: int, on_cpu: bool = False) -> ServerCommand:
    settings = pytorch_server_settings(cfg)
    argv = [sys.executable, "-m", "lem_runner.serving.transformers_server", "--model", model_path, "--port", str(port),
            "--served-model-name", SERVED_NAME, "--dtype", cfg.dtype, "--device", cfg.device,
            "--max-batch", str(settings["max_batch"]), "--max-tokens", str(settings["max_tokens"]),
            "--seed", str(cfg.seed)]
    return ServerCommand("lem_runner.serving.transformers_server (transformers continuous batching)", argv,
                         batch_size=settings["max_batch"], busy_metrics=("lem:num_requests_running",))


def tensorrt_command(cfg: ExperimentConfig, model_path: str, port: int, on_cpu: bool = False) -> ServerCommand:
    t = cfg.tensorrt
    argv = ["trtllm-serve", "serve", model_path, "--host", "127.0.0.1", "--port", str(port), "--backend", "pytorch",
            "--tp_size", str(t.tensor_parallel_size), "--pp_size", str(t.pipeline_parallel_size),
            "--kv_cache_free_gpu_memory_fraction", str(t.kv_cache_free_gpu_memory_fraction)]
    for key, value in (("max_batch_size", t.max_batch_size), ("max_num_tokens", t.max_num_tokens),
                       ("max_seq_len", t.max_seq_len)):
        if value is not None:
            argv += [f"--{key}", str(value)]
    return ServerCommand("trtllm-serve", argv, batch_size=t.max_batch_size)


def server_command(cfg: ExperimentConfig, model_path: str, port: int, on_cpu: bool) -> ServerCommand:
    """The server the backend's spec names (``server_command``, ``module:function``)."""
    target = cfg.spec.server_command
    if target is None:
        raise ValueError(f"scenario serving: the {cfg.backend} backend has no server")
    module_name, _, function = target.partition(":")
    return getattr(importlib.import_module(module_name), function)(cfg, model_path, port, on_cpu)
