"""What the installed transformers would refuse in a pytorch run's settings, read from its own definitions.

``generate_kwargs`` keys must be attributes of ``GenerationConfig`` (what ``generate`` reads); ``model_kwargs`` keys
must be ``from_pretrained``'s named parameters, the keyword arguments its body pops (read from its source, so they
follow the installed version), or attributes of the model's config (any other keyword is set on the config).
Sampling knobs transformers lacks (presence/frequency penalties) are refused with the reason. Runs in the runner
before loading and, with the host's transformers, in the controller's checks (the pytorch image pins the host's
transformers, so both see the same definitions); the quantization library is looked for where the run happens.
Imports transformers only when called.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path
from typing import Any

from lem_runner.backends.pytorch.config import QUANTIZATION_METHODS
from lem_runner.contract.engine_args import unknown_keys

#: decoding fields -> the GenerationConfig attribute that applies them
SAMPLING_ATTRIBUTES = {"min_p": "min_p", "repetition_penalty": "repetition_penalty",
                       "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty"}
#: the value at which each knob asks nothing of the engine
SAMPLING_NEUTRAL = {"min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}

_POPPED = re.compile(r"""kwargs\.pop\(\s*["']([A-Za-z]\w*)["']""")


def transformers_version() -> str | None:
    """The installed transformers' version, or None where it is not installed."""
    if importlib.util.find_spec("transformers") is None:
        return None
    import transformers

    return transformers.__version__


def generation_config_keys() -> set[str]:
    """Every public attribute of a default ``GenerationConfig``: the settings ``generate`` reads."""
    from transformers import GenerationConfig

    return {k for k in vars(GenerationConfig()) if not k.startswith("_") and k != "transformers_version"}


def from_pretrained_keys(model_path: str | None = None) -> set[str]:
    """Keyword arguments ``from_pretrained`` accepts: its named parameters, the ones its body pops, and the config's
    attributes (the base ``PretrainedConfig``'s and, for a local model folder, its config class's)."""
    from transformers import PretrainedConfig, PreTrainedModel

    method = PreTrainedModel.from_pretrained
    names = {p for p, v in inspect.signature(method).parameters.items()
             if v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)} - {"pretrained_model_name_or_path"}
    try:
        names |= set(_POPPED.findall(inspect.getsource(method)))
    except (OSError, TypeError):
        pass
    names |= set(PretrainedConfig().to_dict())
    if model_path and (Path(model_path) / "config.json").is_file():
        from transformers import AutoConfig

        try:  # the model class's own config attributes, defaults included
            names |= set(AutoConfig.from_pretrained(model_path).to_dict())
        except (OSError, ValueError):
            pass
    return {n for n in names if not n.startswith("_")}


def _combination_problems(config: Any) -> list[str]:
    p = config.pytorch
    out = []
    if config.synthetic_weights:
        for name, value in (("quantization", p.quantization), ("device_map", p.device_map),
                            ("model_kwargs", p.model_kwargs or None)):
            if value is not None:
                out.append(f"pytorch.{name}: applies to from_pretrained, but synthetic_weights builds the model from "
                           "its config (from_config); drop one of them")
    if config.scenario == "serving":
        for name, value in (("torch_compile", p.torch_compile or None), ("cache_implementation",
                            p.cache_implementation), ("quantization", p.quantization), ("device_map", p.device_map),
                            ("generate_kwargs", p.generate_kwargs or None), ("model_kwargs", p.model_kwargs or None)):
            if value is not None:
                out.append(f"pytorch.{name}: not applied by lem's transformers server (scenario serving); use "
                           "scenario offline")
        for knob, neutral in SAMPLING_NEUTRAL.items():
            if getattr(config.decoding, knob) != neutral:
                out.append(f"decoding.{knob}: not applied by lem's transformers server (scenario serving)")
    if p.device_map is not None and config.device == "cpu" and len(config.devices) > 1:
        out.append("pytorch.device_map: spreads the model over the GPUs in devices, but device is 'cpu'")
    return out


def library_problem(config: Any) -> str | None:
    """Why ``pytorch.quantization`` cannot run in this environment (its library is missing), or None."""
    method = config.pytorch.quantization
    if method is None:
        return None
    library, _how = QUANTIZATION_METHODS[method]
    if importlib.util.find_spec(library) is None:
        return (f"pytorch.quantization '{method}' needs the {library} package, which is not installed in the "
                f"runner's environment; install it there (pip install {library}) or pick another method")
    return None


def pytorch_problems(config: Any, model_path: str | None = None, in_runner: bool = True) -> list[str]:
    """Every setting of a pytorch run the installed transformers would refuse, one line each. Empty where
    transformers is not installed. ``in_runner`` False (the controller's host check): the quantization library is
    looked for only when the run is local (an image may hold what the host lacks)."""
    if config.backend != "pytorch":
        return []
    out = _combination_problems(config)
    if in_runner or config.runner == "local":
        out += [x for x in [library_problem(config)] if x]
    p = config.pytorch
    asks = p.generate_kwargs or p.model_kwargs or any(
        getattr(config.decoding, k) != SAMPLING_NEUTRAL[k] for k in SAMPLING_ATTRIBUTES)
    version = transformers_version() if asks else None  # importing transformers costs seconds: only when needed
    if version is None:
        return out
    gen_keys = generation_config_keys()
    out += unknown_keys("pytorch.generate_kwargs", p.generate_kwargs, gen_keys,
                        f"transformers {version}'s GenerationConfig")
    if p.model_kwargs:
        out += unknown_keys("pytorch.model_kwargs", p.model_kwargs, from_pretrained_keys(model_path),
                            f"transformers {version}'s from_pretrained (loading arguments or model config attributes)")
    for knob, attr in SAMPLING_ATTRIBUTES.items():
        if getattr(config.decoding, knob) != SAMPLING_NEUTRAL[knob] and attr not in gen_keys:
            out.append(f"decoding.{knob}: transformers {version}'s generate has no {knob.replace('_', ' ')} (an "
                       "OpenAI-style penalty); use decoding.repetition_penalty, or the vllm or tensorrt backend")
    return out
