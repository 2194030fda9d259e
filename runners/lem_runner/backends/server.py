"""What a backend's server command is (``ServerCommand``), as each backend's ``server.py`` builds it
(``backends/<name>/server.py``, named by its spec's ``server_command``), and the dispatch from a config to it.

The serving scenario (lem_runner/serving) starts, health-checks, drives and stops the server from this record alone;
it knows no backend.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from lem_runner.contract.config import ExperimentConfig

#: the model name every server lem starts serves under (the load generator asks for it)
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
    #: the prefix cache's two counters on GET /metrics, (tokens looked up, tokens found), read before and after the
    #: load window for its hit rate; none: the server exposes no such counters
    prefix_cache_metrics: tuple[str, str] | None = None
    #: what the server was started with beyond its flags (e.g. environment set for it), for the result's backend
    #: details
    details: dict[str, str | int | float | bool | None] = field(default_factory=dict)
    #: the load generator sends /v1/chat/completions (the prompt as one user message) instead of /v1/completions:
    #: the route on which the server separates reasoning from the answer (vLLM with --reasoning-parser)
    chat_route: bool = False


def cli_flag(key: str) -> str:
    """An engine argument as a command-line flag: ``max_num_seqs`` -> ``--max-num-seqs``."""
    return "--" + key.replace("_", "-")


def server_command(cfg: ExperimentConfig, model_path: str, port: int, on_cpu: bool) -> ServerCommand:
    """The server the backend's spec names (``server_command``, ``module:function``)."""
    target = cfg.spec.server_command
    if target is None:
        raise ValueError(f"scenario serving: the {cfg.backend} backend has no server")
    module_name, _, function = target.partition(":")
    return getattr(importlib.import_module(module_name), function)(cfg, model_path, port, on_cpu)
