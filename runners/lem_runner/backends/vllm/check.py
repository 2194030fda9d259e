"""What the installed vLLM would refuse in a vllm run's settings: ``vllm.engine_args`` keys that are not fields of its
``vllm.engine.arg_utils.EngineArgs`` (the dataclass ``vllm.LLM`` hands its keyword arguments to), and declared
settings this vLLM version has no engine argument for. vLLM is installed only in its image, so this runs in the
runner before the engine starts (the host check finds no vLLM and says nothing); importing vllm takes seconds, so it
is imported only when there is something to check."""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any

from lem_runner.contract.engine_args import unknown_keys

#: declared vllm fields checked against EngineArgs (they appeared in vLLM releases after others)
VERSIONED_FIELDS = ("enable_chunked_prefill", "speculative_config", "cpu_offload_gb", "async_scheduling")


def engine_arg_names() -> set[str]:
    """The fields of this vLLM's ``EngineArgs``."""
    from vllm.engine.arg_utils import EngineArgs

    return {f.name for f in dataclasses.fields(EngineArgs)}


def engine_arg_problems(config: Any, names: set[str], version: str) -> list[str]:
    """One line per pass-through key or declared setting that ``names`` (EngineArgs' fields) lacks."""
    v = config.vllm
    what = f"vLLM {version}'s EngineArgs"
    out = unknown_keys("vllm.engine_args", v.engine_args, names, what)
    out += [f"vllm.{field}: this vLLM ({version}) has no such engine argument in its EngineArgs"
            for field in VERSIONED_FIELDS if getattr(v, field) is not None and field not in names]
    return out


def reasoning_parser_names() -> set[str]:
    """The reasoning parsers this vLLM registers (``ReasoningParserManager``: eagerly and lazily registered)."""
    from vllm.reasoning import ReasoningParserManager as m

    return {*getattr(m, "reasoning_parsers", {}), *getattr(m, "lazy_parsers", {})}


def reasoning_parser_problem(name: str | None, names: set[str], version: str) -> list[str]:
    if name is None or not names or name in names:
        return []
    return [f"vllm.reasoning_parser: '{name}' is not a reasoning parser of vLLM {version} (it has: "
            f"{', '.join(sorted(names))})"]


def vllm_problems(config: Any, model_path: str | None = None, in_runner: bool = True) -> list[str]:
    """Every vllm setting the installed vLLM would refuse; empty where vLLM is not installed (the host)."""
    if config.backend != "vllm" or importlib.util.find_spec("vllm") is None:
        return []
    v = config.vllm
    if not v.engine_args and all(getattr(v, f) is None for f in VERSIONED_FIELDS) and v.reasoning_parser is None:
        return []
    import vllm

    out = engine_arg_problems(config, engine_arg_names(), vllm.__version__)
    if v.reasoning_parser is not None:
        out += reasoning_parser_problem(v.reasoning_parser, reasoning_parser_names(), vllm.__version__)
    return out
