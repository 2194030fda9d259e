"""llama-cpp-python's own OpenAI-compatible server (``llama_cpp.server``) as the llamacpp backend's server: the same
library build and the same ``Llama`` arguments as the offline backend (``backend.llama_args``), each as its
command-line flag (its ``ModelSettings`` mirror ``Llama``'s arguments), the model served as ``lem``. It is started
through ``usage_server`` (its ``create_app`` behind a small middleware of lem's), which adds the ``usage`` chunk the
library's stream lacks, so every request's input and output token counts are the GGUF tokenizer's own.

Chosen over llama.cpp's C++ ``llama-server`` because that binary is not part of the llama-cpp-python build lem
installs (it would be a second source build of llama.cpp with its tools). What that costs: it has no ``ignore_eos``
(``min_tokens``, which the load generator sends with it, keeps the end token back), it serves one request at a time
(its lock), and it has no ``/health`` route (``/v1/models`` answers once the model is loaded).
``interrupt_requests`` is turned off: by default a new request cuts the one streaming.
"""

from __future__ import annotations

import json
import sys

from lem_runner.backends.server import SERVED_NAME, ServerCommand
from lem_runner.contract.config import ExperimentConfig

SERVER_MODULE = "lem_runner.backends.llamacpp.usage_server"


def server_flags(args: dict, known: set[str]) -> list[str]:
    """``Llama`` arguments as the server's ``--name value`` flags; ValueError naming a pass-through key the server
    cannot be started with (not one of its settings)."""
    unknown = sorted(k for k in args if k not in known)
    if unknown:
        raise ValueError(f"llamacpp.llama_args: {', '.join(unknown)} cannot be given to llama-cpp-python's server "
                         "(not one of its ModelSettings)")
    argv: list[str] = []
    for key, value in args.items():
        text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        argv += [f"--{key}", text]
    return argv


def llamacpp_command(cfg: ExperimentConfig, model_path: str, port: int, on_cpu: bool) -> ServerCommand:
    from llama_cpp.server.settings import ModelSettings

    from lem_runner.backends.llamacpp.backend import llama_args

    args = llama_args(cfg, model_path)
    args["model"] = args.pop("model_path")
    argv = [sys.executable, "-m", SERVER_MODULE, "--host", "127.0.0.1", "--port", str(port),
            "--model_alias", SERVED_NAME, "--interrupt_requests", "False"]
    argv += server_flags(args, set(ModelSettings.model_fields))
    return ServerCommand("llama_cpp.server (llama-cpp-python's OpenAI-compatible server, usage added by "
                         f"{SERVER_MODULE})", argv,
                         health_path="/v1/models", batch_size=1)
