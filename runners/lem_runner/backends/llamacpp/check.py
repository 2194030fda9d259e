"""What the installed llama-cpp-python would refuse in a llamacpp run's settings: ``llamacpp.llama_args`` keys that
are not named parameters of its ``llama_cpp.Llama.__init__`` (it also takes ``**kwargs``, which it ignores, so a
misspelt key would silently do nothing), and KV-cache types it has no ggml type for. Runs in the runner before
loading, and in ``lem config validate`` where the host has llama-cpp-python (empty where it does not)."""

from __future__ import annotations

import importlib.util
import inspect
from typing import Any

from lem_runner.contract.engine_args import unknown_keys


def llama_parameter_names() -> set[str]:
    """The named parameters of this llama-cpp-python's ``Llama.__init__`` (not ``self``, not ``**kwargs``)."""
    from llama_cpp import Llama

    params = inspect.signature(Llama.__init__).parameters.values()
    return {p.name for p in params if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def ggml_type(name: str) -> int | None:
    """llama_cpp's ``GGML_TYPE_<NAME>`` constant, None where this build has none."""
    import llama_cpp

    value = getattr(llama_cpp, f"GGML_TYPE_{name.upper()}", None)
    return value if isinstance(value, int) else None


def llama_arg_problems(config: Any, names: set[str], version: str) -> list[str]:
    """One line per pass-through key ``names`` lacks and per cache type this build cannot name."""
    section = config.llamacpp
    out = unknown_keys("llamacpp.llama_args", section.llama_args, names, f"llama-cpp-python {version}'s Llama")
    for field in ("type_k", "type_v"):
        value = getattr(section, field)
        if value is not None and ggml_type(value) is None:
            out.append(f"llamacpp.{field}: llama-cpp-python {version} has no ggml type '{value}'")
    return out


def llamacpp_problems(config: Any, model_path: str | None = None, in_runner: bool = True) -> list[str]:
    """Every llamacpp setting the installed llama-cpp-python would refuse; empty where it is not installed."""
    if config.backend != "llamacpp" or importlib.util.find_spec("llama_cpp") is None:
        return []
    section = config.llamacpp
    if not section.llama_args and section.type_k is None and section.type_v is None:
        return []
    import llama_cpp

    return llama_arg_problems(config, llama_parameter_names(), llama_cpp.__version__)
