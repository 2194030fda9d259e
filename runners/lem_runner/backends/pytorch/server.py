"""lem's transformers continuous-batching server (transformers_server.py beside this module) as the pytorch
backend's server: ``pytorch.batch_size`` caps the requests batched together (32 when not set: the spec's
``serving_defaults``, written into the config so the value survives the request's JSON round trip, where every field
reads as set)."""

from __future__ import annotations

import sys

from lem_runner.backends.server import SERVED_NAME, ServerCommand
from lem_runner.contract.config import ExperimentConfig

SERVER_MODULE = "lem_runner.backends.pytorch.transformers_server"


def pytorch_server_settings(cfg: ExperimentConfig) -> dict:
    """The run-level values lem's transformers server is started with (so they join a serving run's engine
    identity): its batch cap (``pytorch.batch_size``; a serving config without one takes the spec's serving default,
    32), its default ``max_tokens``, and its decoding: transformers' continuous batching samples with one generation
    config for every request, so the server applies the config's ``decoding`` from its start and refuses a request
    asking for other decoding (the recorded config is what ran). The knobs it cannot apply at all (repetition
    penalty, min_p, presence/frequency penalties) are refused before the run (check.py)."""
    d = cfg.decoding
    return {"max_batch": cfg.pytorch.batch_size, "max_tokens": cfg.max_output_tokens, "do_sample": d.do_sample,
            "temperature": d.temperature, "top_p": d.top_p, "top_k": d.top_k}


def pytorch_command(cfg: ExperimentConfig, model_path: str, port: int, on_cpu: bool = False) -> ServerCommand:
    settings = pytorch_server_settings(cfg)
    argv = [sys.executable, "-m", SERVER_MODULE, "--model", model_path, "--port", str(port),
            "--served-model-name", SERVED_NAME, "--dtype", cfg.dtype, "--device", cfg.device,
            "--max-batch", str(settings["max_batch"]), "--max-tokens", str(settings["max_tokens"]),
            "--seed", str(cfg.seed)]
    if settings["do_sample"]:
        argv += ["--do-sample", "--temperature", str(settings["temperature"]), "--top-p", str(settings["top_p"]),
                 "--top-k", str(settings["top_k"])]
    return ServerCommand(f"{SERVER_MODULE} (transformers continuous batching)", argv,
                         batch_size=settings["max_batch"], busy_metrics=("lem:num_requests_running",))
