"""Inference backends, one folder each (config.py, spec.py, backend.py), chosen by name through the registry
(lem_runner.contract.backends). This package imports nothing heavy: the contract loads the folders' specs through
it, and each implementation imports its library only when created."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lem_runner.backends.base import InferenceBackend
    from lem_runner.contract.config import ExperimentConfig

_BASE_NAMES = ("InferenceBackend",)


def create_backend(config: ExperimentConfig, model_path: str) -> InferenceBackend:
    """The backend the config names (its spec's implementation), not yet loaded."""
    from lem_runner.contract.backends import registry

    spec = registry().get(config.backend)
    if spec is None:
        raise ValueError(f"backend '{config.backend}' is not available in this runner")
    module_name, _, class_name = spec.implementation.partition(":")
    return getattr(importlib.import_module(module_name), class_name)(config, model_path)


def __getattr__(name: str) -> Any:  # the protocol, imported on first use (base imports the experiment model)
    if name in _BASE_NAMES:
        from lem_runner.backends import base

        return getattr(base, name)
    raise AttributeError(f"module 'lem_runner.backends' has no attribute '{name}'")


__all__ = ["InferenceBackend", "create_backend"]
