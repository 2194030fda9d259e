"""The backend registry: one BackendSpec per backend, read by everything that used to name backends itself.

A backend is a folder ``lem_runner/backends/<name>/`` holding ``config.py`` (its config section), ``spec.py``
(``SPEC``, a BackendSpec) and ``backend.py`` (the implementation, which alone imports the engine's library), plus
``images/<name>/Dockerfile``. The in-tree folders are found by listing ``lem_runner/backends``; a backend living in
another package registers its spec module either through the entry-point group ``lem.backends`` (``name =
"package.module"``) or by naming it in ``LEM_BACKENDS`` (comma-separated module paths), read once per process.

A spec module imports only this module, ``lem_runner.contract.section`` and its own ``config``: the controller and
the contract load it, so it must not import torch, an engine, or ``lem_runner.contract.config`` (which is assembled
from the specs).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from lem_runner.contract.section import Section

ENTRY_POINT_GROUP = "lem.backends"
ENV_VAR = "LEM_BACKENDS"
#: device kinds a backend can run on
DEVICE_KINDS = ("cuda", "cpu")
#: what a backend loads: a transformers folder (config.json and weights) or one GGUF file
MODEL_FORMATS = ("transformers", "gguf")

Check = Callable[[Any, Any], None]  # (experiment, its section) -> None, raising ValueError with the field path


def one_gpu(_section: Any) -> int:
    return 1


def tp_times_pp(section: Any) -> int:
    """tensor_parallel_size x pipeline_parallel_size GPUs."""
    return int(section.tensor_parallel_size) * int(section.pipeline_parallel_size)


@dataclass(frozen=True)
class ImageSpec:
    """How ``lem images build`` builds the backend's runner image from ``images/<name>/Dockerfile``."""

    #: the runner extra (runners/pyproject.toml) each variant installs: {"gpu": ..., "cpu": ...}; no "cpu": no CPU image
    extras: Mapping[str, str]
    #: the distribution whose version labels the image (lem.backend.version)
    library: str
    #: runner dependencies pinned to the host's installed versions (so an isolated run uses the host's stack)
    pinned: tuple[str, ...] = ()
    #: build args the CPU variant needs
    cpu_buildargs: Mapping[str, str] = field(default_factory=dict)
    #: the Dockerfile, if not images/<name>/Dockerfile in the source tree
    dockerfile: str | None = None
    #: file-name patterns of locally built wheels the image installs (source builds, e.g. a C++ engine's binding),
    #: copied into the build context's wheels/ from $LEM_WHEEL_DIR (the Makefile builds them there)
    local_wheels: tuple[str, ...] = ()

    @property
    def has_cpu_variant(self) -> bool:
        return "cpu" in self.extras

    @property
    def has_gpu_variant(self) -> bool:
        return "gpu" in self.extras


@dataclass(frozen=True)
class EngineMarkers:
    """How the engine watch (backends/engine_watch.py) knows this backend's engine processes and their last words."""

    #: process-name prefixes the engine gives its child processes (besides plain multiprocessing children)
    titles: tuple[str, ...] = ()
    #: substrings of lines the engine logs when it has failed for good, even if its process lingers: the engine's
    #: own messages only (a generic phrase such as "died unexpectedly" also matches Python's harmless warnings)
    fatal: tuple[str, ...] = ()
    #: exception texts the engine wraps around a root cause: not the line to report
    wrappers: tuple[str, ...] = ()


GIB = 2**30


@dataclass(frozen=True)
class MemoryTraits:
    """How a backend's engine holds memory, for ``lem run --dry-run``'s estimate (docs/method.md, Memory estimate):
    what the controller cannot know without the engine's own defaults."""

    #: sequences in flight at once: the batch knob, or the engine's default when it is unset
    batch: int
    #: most prompt tokens one engine step prefills (None: the whole batch's prompts at once)
    prefill_tokens_cap: int | None = None
    #: the attention kernel holds one layer's full score matrix (batch x heads x prompt^2)
    materialises_attention: bool = False
    #: share of the GPUs' memory the engine preallocates and works within (None: it takes what it needs)
    gpu_budget_fraction: float | None = None
    #: KV space the engine preallocates on CPU whatever the batch (None: the batch's own KV cache)
    cpu_kv_bytes: int | None = None
    #: the field that sets that CPU KV space, for the message
    cpu_kv_field: str = ""
    #: short of KV space the engine runs fewer sequences at once rather than failing (refused only when one
    #: sequence cannot fit)
    schedules_fewer: bool = False


@dataclass(frozen=True)
class ModelFootprint:
    """What a backend's model file itself says it will hold, for the dry-run estimate where config.json does not
    describe what the engine loads (a GGUF runs at its own tensor types): weights as stored, the KV cache of one
    sequence at the engine's context, and the sizes the activation term needs."""

    source: str  # what it was read from, in words
    parameters: int  # elements stored
    weight_bytes: int  # at the file's own tensor types
    kv_bytes: int  # one sequence at ``context_tokens``, at the engine's cache types
    context_tokens: int
    hidden: int
    intermediate: int
    vocab: int
    notes: tuple[str, ...] = ()


def no_fields(_config: Any) -> tuple[str, ...]:
    return ()


def no_refusal(_config: Any) -> str | None:
    return None


def device_as_configured(_config: Any) -> str | None:
    """A backend whose engine runs where ``device`` says (None: lem's rule for ``device: auto``, a GPU when one is
    visible)."""
    return None


def batch_knob_traits(config: Any, device_kind: str, device_memory_bytes: int | None, device_name: str) -> MemoryTraits:
    """A backend without memory traits of its own: its batch knob's value (1 without one)."""
    spec = config.spec
    value = getattr(config.section, spec.batch_field) if spec.batch_field else None
    return MemoryTraits(batch=value or 1)


@dataclass(frozen=True)
class BackendSpec:
    """What lem needs to know about a backend without importing it."""

    name: str
    #: the config section model; the experiment's field of the same name as the backend holds it
    config: type[Section]
    #: ``module:Class`` of the InferenceBackend, constructed as ``Class(config, model_path)``
    implementation: str
    summary: str
    image: ImageSpec
    #: modules that must be importable for a local (non-isolated) run
    host_modules: tuple[str, ...]
    #: distributions whose versions the result records
    libraries: tuple[str, ...]
    #: the section field that sets the batch (None: the backend has no batch knob; batch_refusal says why)
    batch_field: str | None
    #: what one unit of that batch is, in words (goes into docs and the result's batch description)
    batch_meaning: str
    #: section fields that define the loaded engine (changing one needs a new engine); the experiment-level ones are in contract/engine.py
    engine_section_fields: tuple[str, ...]
    device_kinds: tuple[str, ...] = DEVICE_KINDS
    #: what the backend loads (MODEL_FORMATS): the model reference resolves to a transformers folder, or to one GGUF
    #: file (a ``.gguf`` path, a folder holding one, or the embedded model's own GGUF)
    model_format: str = "transformers"
    #: where the backend sorts in lists and messages; the first in the registry is the default backend
    order: int = 100
    #: GPUs the section uses; ``devices`` must list exactly that many (None: any number, e.g. pytorch's device_map)
    gpu_count: Callable[[Any], int | None] = one_gpu
    #: the GPU-count rule in words, for the error message ({n}: the count)
    gpu_count_rule: str = "runs on one GPU"
    #: shared memory the runner container gets (engines that move tensors between processes need more)
    shm_size: str = "1g"
    #: docker ipc mode; None: the engine's private namespace (containers are never given the host's)
    ipc_mode: str | None = None
    #: cross-field rules that involve experiment-level fields; raise ValueError naming the field
    checks: tuple[Check, ...] = ()
    #: ``module:function`` building the serving scenario's server command, ``f(cfg, model_path, port, on_cpu)``
    server_command: str | None = None
    #: ``module:function`` naming the run-level values the server is started with, ``f(cfg) -> dict`` (they join a
    #: serving run's engine identity: two runs share a server only if they would start the same one)
    server_settings: str | None = None
    #: why a serving run on this backend cannot be handed a server kept from another run (None: it can)
    server_reuse_refusal: str | None = None
    #: section values a serving run takes where the user set none (written into the config, so every reader and the
    #: runner, after the request's JSON round trip, see the same value)
    serving_defaults: Mapping[str, Any] = field(default_factory=dict)
    batch_refusal: str = ""
    #: the engine's memory traits for the dry-run estimate, ``f(experiment, device_kind, device_memory_bytes,
    #: device_name) -> MemoryTraits``
    memory_traits: Callable[[Any, str, int | None, str], MemoryTraits] = batch_knob_traits
    #: ``module:function`` reading the model file for the dry-run estimate, ``f(experiment, model_file) ->
    #: ModelFootprint | None`` (None: it cannot be read here); None: the estimate reads config.json
    footprint: str | None = None
    #: ``module:function`` checking the engine's own settings against the installed engine's definitions,
    #: ``f(experiment, model_path, in_runner) -> list of problems`` (empty where the engine is not installed); the
    #: runner calls it before loading, the controller's checks too (contract/engine_args.py)
    engine_check: str | None = None
    #: experiment-level dotted fields that also define this backend's engine for ``config`` (beyond
    #: contract/engine.py's own and ``engine_section_fields``), e.g. an engine built for a maximum input length
    engine_fields_of: Callable[[Any], tuple[str, ...]] = no_fields
    #: why a run on ``config`` must have an engine of its own on this backend, in one line naming the field (None:
    #: it may share one); e.g. state the engine keeps between runs and cannot reset
    reuse_refusal_of: Callable[[Any], str | None] = no_refusal
    #: section fields as a table header or plot label shows them, e.g. {"tensor_parallel_size": "tp"} (the batch
    #: field always reads "bs")
    short_names: Mapping[str, str] = field(default_factory=dict)
    #: what the engine watch looks for in this backend's engine processes (its implementation starts the watch)
    engine_markers: EngineMarkers = field(default_factory=EngineMarkers)
    #: the backend scores continuations (a ``loglikelihood(pairs)`` method, teacher-forced): task accuracy
    #: (config quality.task) runs on it
    scores_continuations: bool = False
    #: the backend gives teacher-forced next-token log-probabilities (a ``next_token_logprobs(prompt_ids,
    #: continuation_ids, top_k)`` method, one {token_id: logprob} per continuation position, or the full vocabulary's
    #: list for top_k None) and its generation records carry their prompt and output token ids: output fidelity
    #: (config quality.reference) runs on it
    gives_next_token_logprobs: bool = False
    #: the backend scores a whole text (a ``rolling_loglikelihood(text) -> (summed log-likelihood, tokens, window)``
    #: method over the windows of lem_runner.quality.perplexity): perplexity (config quality.perplexity) runs on it
    gives_rolling_loglikelihood: bool = False
    #: where the engine computes ('cpu' or 'cuda') when the backend's own settings decide it rather than ``device``
    #: (llama.cpp with no layers offloaded runs on the CPU on a GPU host): the serving run reads it before its
    #: server starts, to measure the energy of the device that does the work; None: ``device`` decides
    device_kind_of: Callable[[Any], str | None] = device_as_configured

    def __post_init__(self) -> None:
        unknown = [d for d in self.device_kinds if d not in DEVICE_KINDS]
        if unknown:
            raise ValueError(f"backend {self.name}: unknown device kind(s) {unknown}")
        if self.model_format not in MODEL_FORMATS:
            raise ValueError(f"backend {self.name}: unknown model format '{self.model_format}'")
        fields = self.config.model_fields
        for f in (*self.engine_section_fields, *([self.batch_field] if self.batch_field else [])):
            if f not in fields:
                raise ValueError(f"backend {self.name}: '{f}' is not a field of {self.config.__name__}")

    @property
    def batch_knob(self) -> str | None:
        """The dotted field the batch comes from, e.g. ``vllm.max_num_seqs``."""
        return f"{self.name}.{self.batch_field}" if self.batch_field else None

    def server_values(self, config: Any) -> dict[str, Any]:
        """The run-level values ``config``'s server would be started with (see ``server_settings``)."""
        if not self.server_settings:
            return {}
        module_name, _, function = self.server_settings.partition(":")
        return dict(getattr(importlib.import_module(module_name), function)(config))

    def model_footprint(self, config: Any, model_file: Any) -> ModelFootprint | None:
        """The model file's own footprint (see ``footprint``); None without a hook or where it cannot be read."""
        if not self.footprint:
            return None
        module_name, _, function = self.footprint.partition(":")
        return getattr(importlib.import_module(module_name), function)(config, model_file)

    def engine_problems(self, config: Any, model_path: str | None = None, in_runner: bool = False) -> list[str]:
        """What the engine installed in this process would refuse in ``config`` (see ``engine_check``)."""
        if not self.engine_check:
            return []
        module_name, _, function = self.engine_check.partition(":")
        return list(getattr(importlib.import_module(module_name), function)(config, model_path, in_runner))

    def configured_batch(self, section: Any) -> int | None:
        """The batch knob's configured value (None when unset: the engine picks it)."""
        return getattr(section, self.batch_field) if self.batch_field else None

    def applied_batch(self, section: Any, details: Mapping[str, Any]) -> int | None:
        """The batch as the backend applied it: the value it reported under ``details[batch_field]`` (a backend
        reads it back from its engine, e.g. vLLM's resolved ``scheduler_config.max_num_seqs``), else the configured
        value; None when neither is known (the engine chose and did not say)."""
        if not self.batch_field:
            return None
        reported = details.get(self.batch_field)
        if isinstance(reported, int) and not isinstance(reported, bool):
            return reported
        return self.configured_batch(section)


_REGISTRY: dict[str, BackendSpec] | None = None


def _spec_of(module_name: str) -> BackendSpec:
    module = importlib.import_module(module_name)
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, BackendSpec):
        raise ImportError(f"backend spec module {module_name} defines no SPEC (a BackendSpec)")
    return spec


def _in_tree() -> list[str]:
    """The spec modules of the folders under lem_runner/backends, found by listing the folder (the package is not
    imported here: the contract sits below the backends, which import it)."""
    found = importlib.util.find_spec("lem_runner.backends")
    paths = list(found.submodule_search_locations or []) if found else []
    folders = sorted(m.name for m in pkgutil.iter_modules(paths) if m.ispkg)
    return [f"lem_runner.backends.{n}.spec" for n in folders
            if importlib.util.find_spec(f"lem_runner.backends.{n}.spec") is not None]


def _third_party() -> list[str]:
    names = [v.strip() for v in os.environ.get(ENV_VAR, "").split(",") if v.strip()]
    try:
        names += [ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]
    except Exception:  # a broken distribution's metadata must not stop lem
        pass
    return names


def registry() -> dict[str, BackendSpec]:
    """Every known backend by name, by their specs' ``order`` (the first is the default backend), then by name."""
    global _REGISTRY
    if _REGISTRY is None:
        found: dict[str, BackendSpec] = {}
        for module_name in _in_tree() + _third_party():
            spec = _spec_of(module_name)
            if spec.name in found and found[spec.name] is not spec:
                raise ImportError(f"backend '{spec.name}' is registered twice ({module_name})")
            found[spec.name] = spec
        order = sorted(found, key=lambda n: (found[n].order, n))
        _REGISTRY = {n: found[n] for n in order}
    return _REGISTRY


def foreign_section_message(section: str, backend: str) -> str:
    """Why a section for another backend is refused (one wording for the model and the controller's checks)."""
    return (f"settings for backend '{section}', but the backend is '{backend}' (they would be ignored; remove the "
            f"section or set backend: {section})")


def backend_names() -> tuple[str, ...]:
    return tuple(registry())


def default_backend() -> str:
    """The backend a config without ``backend:`` runs on: the registry's first (lowest spec ``order``)."""
    return next(iter(registry()))


def backend_spec(name: str) -> BackendSpec:
    """The spec of ``name``; KeyError naming the known backends when there is none."""
    specs = registry()
    if name not in specs:
        raise KeyError(f"unknown backend '{name}' (known: {', '.join(specs)})")
    return specs[name]
