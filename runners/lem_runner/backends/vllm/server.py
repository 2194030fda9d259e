"""vLLM's OpenAI-compatible server: ``python -m vllm.entrypoints.openai.api_server`` (the module entry point works in
the CPU build, where the ``vllm`` console script does not), engine arguments from the ``vllm:`` section as its CLI
flags; ``--enforce-eager`` on CPU (inductor needs a C++ compiler the images lack), with the offline engine's CPU
environment (``cpu_engine_environment``: the KV cache space, and TORCHDYNAMO_DISABLE=1 when eager).
``vllm.reasoning_parser`` becomes ``--reasoning-parser`` and moves the load generator to the chat route, the only
one vLLM applies the parser on (its chat stream then carries the reasoning in ``delta.reasoning``, the answer in
``delta.content``)."""

from __future__ import annotations

import json
import sys

from lem_runner.backends.server import SERVED_NAME, ServerCommand, cli_flag
from lem_runner.contract.config import ExperimentConfig

#: vLLM V1's prefix-cache counters (prometheus_client exposes a counter named X as X_total), in tokens: queried (the
#: prompt tokens looked up in the cache at scheduling) and hit (those found cached). Present with caching off too,
#: then staying at 0 (no lookups).
PREFIX_CACHE_METRICS = ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total")


def vllm_command(cfg: ExperimentConfig, model_path: str, port: int, on_cpu: bool) -> ServerCommand:
    from lem_runner.backends.vllm.backend import cpu_engine_environment, eager_mode, engine_args, environment_details

    args = engine_args(cfg, model_path, on_cuda=not on_cpu)
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1", "--port", str(port),
            "--served-model-name", SERVED_NAME, "--disable-uvicorn-access-log"]
    for key, value in args.items():
        if key in ("enforce_eager", "enable_prefix_caching"):
            continue
        if isinstance(value, bool):  # vLLM's CLI takes booleans as --flag / --no-flag
            argv.append(cli_flag(key) if value else "--no-" + cli_flag(key)[2:])
        elif isinstance(value, (dict, list)):  # nested settings (speculative_config) as JSON, as its CLI reads them
            argv += [cli_flag(key), json.dumps(value)]
        else:
            argv += [cli_flag(key), str(value)]
    if eager_mode(cfg, not on_cpu)[0]:  # unset: eager on CPU (no compiler in the CPU image); false: compile
        argv.append("--enforce-eager")
    argv.append("--enable-prefix-caching" if cfg.vllm.enable_prefix_caching else "--no-enable-prefix-caching")
    if cfg.vllm.reasoning_parser is not None:
        argv += ["--reasoning-parser", cfg.vllm.reasoning_parser]
    env = cpu_engine_environment(cfg, on_cuda=not on_cpu)
    details = environment_details(env)
    reset: tuple[str, ...] = ()
    if cfg.vllm.enable_prefix_caching:  # a cached prefix would serve the next run's prompts: empty it between runs
        env["VLLM_SERVER_DEV_MODE"] = "1"  # the route /reset_prefix_cache exists only in vLLM's dev mode
        reset = ("/reset_prefix_cache",)
    return ServerCommand("vllm.entrypoints.openai.api_server", argv, env, batch_size=args.get("max_num_seqs"),
                         busy_metrics=("vllm:num_requests_running", "vllm:num_requests_waiting"),
                         reset_routes=reset, prefix_cache_metrics=PREFIX_CACHE_METRICS, details=details,
                         chat_route=cfg.vllm.reasoning_parser is not None)
