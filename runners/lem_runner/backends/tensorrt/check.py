"""What the installed TensorRT-LLM would refuse in ``tensorrt.engine_args``: keys that are not fields of the pydantic
model ``LLM(...)`` validates its keyword arguments into — ``tensorrt_llm.llmapi.llm_args.TorchLlmArgs`` for the
PyTorch workflow (``LLM`` from ``tensorrt_llm``), ``TrtLlmArgs`` for the engine workflow (``LLM`` from
``tensorrt_llm._tensorrt_engine``); both subclass ``BaseLlmArgs`` (source: ``tensorrt_llm/llmapi/llm_args.py``). Their
``model_fields`` are the argument names. TensorRT-LLM is installed only in its GPU image, so this runs in the runner;
``engine_arg_problems`` takes the names as an argument so the rule is tested without the engine."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from lem_runner.contract.engine_args import unknown_keys

#: ``tensorrt.llm_backend`` -> (module, class) of the LlmArgs model its LLM class validates arguments into
ARGS_CLASSES = {
    "pytorch": ("tensorrt_llm.llmapi.llm_args", "TorchLlmArgs"),
    "tensorrt": ("tensorrt_llm.llmapi.llm_args", "TrtLlmArgs"),
}


def llm_arg_names(llm_backend: str) -> set[str]:
    """The fields of the installed TensorRT-LLM's LlmArgs model for that workflow."""
    module, attr = ARGS_CLASSES[llm_backend]
    return set(getattr(importlib.import_module(module), attr).model_fields)


def engine_arg_problems(config: Any, names: set[str], version: str) -> list[str]:
    """One line per ``tensorrt.engine_args`` key ``names`` lacks."""
    cls = ARGS_CLASSES[config.tensorrt.llm_backend][1]
    return unknown_keys("tensorrt.engine_args", config.tensorrt.engine_args, names,
                        f"TensorRT-LLM {version}'s {cls}")


def tensorrt_problems(config: Any, model_path: str | None = None, in_runner: bool = True) -> list[str]:
    """Every engine_args key the installed TensorRT-LLM would refuse; empty where it is not installed."""
    if config.backend != "tensorrt" or not config.tensorrt.engine_args:
        return []
    if config.scenario == "serving" and config.serving.endpoint is None:
        return ["tensorrt.engine_args: not passed to trtllm-serve (scenario serving takes the declared fields only)"]
    if importlib.util.find_spec("tensorrt_llm") is None:
        return []
    import tensorrt_llm

    return engine_arg_problems(config, llm_arg_names(config.tensorrt.llm_backend),
                               str(getattr(tensorrt_llm, "__version__", "?")))
