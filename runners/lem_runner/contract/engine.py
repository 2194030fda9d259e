"""Engine identity: which of a config's fields decide the loaded engine, so that runs agreeing on them can share one.

Every field of ExperimentConfig, and of each backend's section, is classified here once: it either defines the engine
(changing it means loading again: model, dtype, devices, vLLM's ``max_num_seqs``, TensorRT's ``max_batch_size``, ...)
or belongs to the run (prompts, lengths, decoding, warmup, window, energy, serving load, GPU operating point: the
runner applies them per run to an engine it already holds). ``tests/unit/test_engine_identity.py`` fails when a field
is added without being classified.

A backend section's engine-defining fields are named by its spec (``engine_section_fields`` in
backends/<name>/spec.py); its other fields belong to the run. A backend whose engine also depends on experiment-level
fields for some configs names them in ``engine_fields_of`` (a built TensorRT engine: its maximum input length).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lem_runner.contract.backends import backend_spec
from lem_runner.contract.config import ExperimentConfig

#: top-level fields that define the engine: what is loaded, how, where, and in which runner/image it lives.
#: ``seed`` seeds the engine's RNG at load (vLLM's ``LLM(seed=...)``, transformers' ``set_seed``) and draws the
#: weights of ``synthetic_weights``; ``runner`` and ``allow_model_download`` decide the image and its network.
ENGINE_TOP_FIELDS: tuple[str, ...] = (
    "model", "backend", "scenario", "dtype", "device", "devices", "seed", "synthetic_weights", "runner",
    "allow_model_download", "slurm",
)

#: top-level fields a run applies to the engine it is given (never part of the identity)
RUN_TOP_FIELDS: tuple[str, ...] = (
    "name", "prompts", "n_prompts", "max_input_tokens", "max_output_tokens", "force_output_length", "decoding",
    "warmup", "energy", "window", "gpu", "carbon", "serving", "quality",
)

def engine_section_fields(backend: str) -> tuple[str, ...]:
    """Fields of ``backend``'s section that define the engine (engine/LLM constructor arguments, environment), as
    its spec (backends/<name>/spec.py) names them; the section's other fields are applied per run."""
    return backend_spec(backend).engine_section_fields


def run_section_fields(backend: str) -> tuple[str, ...]:
    """Fields of ``backend``'s section applied per call (``generate`` arguments, lem's own batching)."""
    spec = backend_spec(backend)
    return tuple(f for f in spec.config.model_fields if f not in spec.engine_section_fields)


def _get(config: ExperimentConfig, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = getattr(node, part)
    return node.model_dump(mode="json") if hasattr(node, "model_dump") else node


def engine_settings(config: ExperimentConfig) -> dict[str, Any]:
    """The engine-defining values of ``config``, by dotted name (the identity's readable form)."""
    names = [*ENGINE_TOP_FIELDS, *(f"{config.backend}.{f}" for f in engine_section_fields(config.backend))]
    names += [n for n in config.spec.engine_fields_of(config) if n not in names]  # the backend's own rule
    settings = {name: _get(config, name) for name in names}
    if config.scenario == "serving":  # the run-level values the server is started with (its batch cap, ...)
        settings.update({f"server.{k}": v for k, v in config.spec.server_values(config).items()})
    return settings


def engine_identity(config: ExperimentConfig) -> str:
    """16 hex of SHA-256 over :func:`engine_settings`: runs with equal identities can be measured on one engine."""
    text = json.dumps(engine_settings(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def reuse_refusal(config: ExperimentConfig) -> str | None:
    """Why a run on ``config`` must have an engine of its own (None: it may share one). An engine whose state could
    leak into the next run is refused unless it can be reset: vLLM's prefix cache is reset before each run
    (``reset_prefix_cache()`` offline, ``POST /reset_prefix_cache`` on its server), TensorRT-LLM's reused KV blocks
    cannot be (each backend says so in its spec's ``reuse_refusal_of``). A serving run's engine is its server: runs at different rates share one (ML.ENERGY and ``vllm bench
    sweep`` do the same), each with its own baseline and warmup."""
    if config.scenario == "serving" and config.serving.endpoint is not None:
        return "serving.endpoint: the server is the user's own; lem starts none, so there is no engine to keep"
    if config.scenario == "serving" and config.spec.server_reuse_refusal:
        return config.spec.server_reuse_refusal
    if config.runner == "slurm":
        return "runner slurm runs one job per run"
    return config.spec.reuse_refusal_of(config)  # the backend's own rule (e.g. engine state it cannot reset)
