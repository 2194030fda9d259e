"""Inference backends, chosen by name. Each imports its library only when created."""

from __future__ import annotations

from lem_runner.backends.base import InferenceBackend
from lem_runner.contract.config import ExperimentConfig


def create_backend(config: ExperimentConfig, model_path: str) -> InferenceBackend:
    """The backend the config names, not yet loaded."""
    if config.backend == "pytorch":
        from lem_runner.backends.pytorch import PyTorchBackend

        return PyTorchBackend(config, model_path)
    if config.backend == "vllm":
        from lem_runner.backends.vllm import VLLMBackend

        return VLLMBackend(config, model_path)
    if config.backend == "tensorrt":
        from lem_runner.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(config, model_path)
    raise ValueError(f"backend '{config.backend}' is not available in this runner")


__all__ = ["InferenceBackend", "create_backend"]
