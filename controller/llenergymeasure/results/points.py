"""A study point's label (``pytorch.batch_size=2, dtype=float32``, as the study expansion writes it) read back as
the parameters it sets, and made short for a table header or a plot (``bs=2 · fp32``), like a model's name."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache

from lem_runner.contract import registry

_SPLIT = re.compile(r", (?=[A-Za-z_][\w.]*=)")  # a new "key=" after ", " (a list value's commas stay inside it)
SWEEP_PREFIX = "sweep."

#: Experiment-level parameter names as a table header shows them (a backend's own come from its spec).
_SHORT_KEYS = {"max_input_tokens": "in", "max_output_tokens": "out", "n_prompts": "n", "input_tokens": "in"}
#: Values that read on their own (the key is obvious from them).
_BARE = {"dtype": {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "auto": "dtype auto"},
         "backend": {}, "device": {}, "run": {}}  # a single run's id reads on its own


def label_params(label: str | None) -> dict[str, str]:
    """``"pytorch.batch_size=2, dtype=float32"`` -> ``{"pytorch.batch_size": "2", "dtype": "float32"}``; {} for
    a label that sets nothing (``base``) or none."""
    if not label or "=" not in label:
        return {}
    out = {}
    for part in _SPLIT.split(label):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


@cache
def _short_keys() -> dict[str, str]:
    """Every short name: the experiment's, then each backend's batch knob ("bs") and its spec's ``short_names``."""
    out = dict(_SHORT_KEYS)
    for spec in registry().values():
        out.update({spec.batch_field: "bs"} if spec.batch_field else {})
        out.update(spec.short_names)
    return out


def short_param(key: str, value: str) -> str:
    leaf = key.split(".")[-1]
    if leaf in _BARE:
        return _BARE[leaf].get(value, value)
    return f"{_short_keys().get(leaf, leaf)}={value}"


def short_labels(params: Sequence[Mapping[str, str]]) -> list[str]:
    """One short label per entry from the parameters that differ between entries, joined by `` · ``; parameters
    equal everywhere are left out (they say nothing about the difference). Empty strings when nothing differs."""
    keys = list(dict.fromkeys(k for p in params for k in p))
    varying = [k for k in keys if len({p.get(k) for p in params}) > 1]
    return [" · ".join(short_param(k, p[k]) for k in varying if k in p) for p in params]


def sweep_columns(labels: Sequence[str | None]) -> list[str]:
    """The ``sweep.<parameter>`` column names for these point labels, in first-seen order."""
    return [SWEEP_PREFIX + k for k in dict.fromkeys(k for lb in labels for k in label_params(lb))]


def short_model(model: str | None) -> str:
    """The model's last name: ``SmolLM2-135M`` for ``HuggingFaceTB/SmolLM2-135M``."""
    if not model:
        return "?"
    return model.rstrip("/").split("/")[-1].split(":")[-1]
