"""`lem run --dry-run`: how much memory each point needs, from the checkpoint's config.json and safetensors headers
(nothing loaded), against what the device it runs on has. The formula and its known error are in docs/method.md
("Memory estimate"); the numbers are an estimate to refuse what cannot fit, not a measurement."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

from lem_runner.contract import ExperimentConfig, nvml
from lem_runner.contract.backends import GIB, MemoryTraits, ModelFootprint
from lem_runner.contract.checkpoint import checkpoint_shapes, llama_like_size, read_hf_config, stored_parameters

#: bytes per element of each compute dtype
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
#: bytes per weight of each quantization method (4-bit: 0.5; 8-bit: 1); scales and zero points left out
QUANT_BYTES = {"awq": 0.5, "gptq": 0.5, "fp8": 1, "compressed-tensors": 0.5, "int4_awq": 0.5, "w4a8_awq": 0.5,
               "int8_sq": 1, "nvfp4": 0.5}
#: GPT-2-style config.json names for the sizes the estimate reads
_ALIASES = {"num_hidden_layers": "n_layer", "num_attention_heads": "n_head", "hidden_size": "n_embd"}


@dataclass(frozen=True)
class Device:
    """What a point runs on: ``kind`` 'cuda' (total memory of the GPUs it uses, from NVML) or 'cpu' (the host's
    available RAM), with a name for the table."""

    kind: str
    memory_bytes: int | None
    name: str


@dataclass(frozen=True)
class MemoryEstimate:
    """One point's estimate, in bytes: weights + KV cache + activations against the budget of its device."""

    label: str
    backend: str
    device: Device
    parameters: int | None
    parameters_source: str
    batch: int  # sequences in flight at once: the batch, or fewer when fewer prompts fill it (the estimate's)
    weights: float | None
    kv_cache: float | None
    activations: float | None
    budget: float | None
    budget_rule: str
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # said, not refused: vLLM will run fewer sequences at once than the batch asks
    #: the batch knob's value (configured, or the engine's default), the one definition lem results shows
    batch_size: int = 0
    batch_knob: str = ""

    @property
    def total(self) -> float | None:
        parts = (self.weights, self.kv_cache, self.activations)
        return None if any(p is None for p in parts) else sum(parts)  # type: ignore[arg-type]

    @property
    def fits(self) -> bool:
        """False only when the estimate shows it cannot fit; an estimate that could not be made does not refuse."""
        return not self.problems

    def refusal(self) -> str:
        return f"{self.label}: " + "; ".join(self.problems)


def size(value: float | None) -> str:
    """Bytes as GiB from 1 GiB up, else MiB (a tiny model's figures would read 0.00 GiB)."""
    if value is None:
        return "?"
    return f"{value / GIB:.2f} GiB" if value >= GIB else f"{value / 2**20:.2f} MiB"


def host_available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else free pages x page size."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def gpu_memory(indices: list[int]) -> tuple[int, str] | None:
    """(total memory of the GPUs at ``indices`` together, the first one's name) from NVML, or None without one. A
    simulated GPU (LEM_SIMULATED_GPU) computes nothing: the run's compute is on the CPU, so it counts as none here."""
    if nvml.simulated():
        return None
    try:
        with nvml.session() as pynvml:
            if pynvml.nvmlDeviceGetCount() == 0:
                return None
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
            total = sum(int(pynvml.nvmlDeviceGetMemoryInfo(h).total) for h in handles)
            return total, nvml.text(pynvml.nvmlDeviceGetName(handles[0]))
    except Exception:  # no driver, no library, an index not there: no GPU to measure against
        return None


def device_for(config: ExperimentConfig, gpus=gpu_memory, host=host_available_bytes) -> Device:
    """The device a run of ``config`` uses: CUDA when asked for or (device auto) when NVML sees a GPU."""
    if config.device != "cpu":
        found = gpus(list(config.devices))
        if found is not None:
            return Device("cuda", found[0], f"{len(config.devices)}x {found[1]}")
        if config.device == "cuda":
            return Device("cuda", None, "cuda (no GPU visible here)")
    return Device("cpu", host(), "host RAM (available)")


def _traits(config: ExperimentConfig, device: Device) -> tuple[MemoryTraits, int]:
    """The backend's memory traits (its spec), with the batch never more than the prompts of an offline run; and
    the batch knob's own value (what the result reports as batch_size)."""
    t = config.spec.memory_traits(config, device.kind, device.memory_bytes, device.name)
    return (replace(t, batch=min(t.batch, config.n_prompts)) if config.scenario == "offline" else t), t.batch


def _weight_bytes(config: ExperimentConfig, hf: dict) -> float:
    section = getattr(config, config.backend, None)
    method = getattr(section, "quantization", None)
    if method in QUANT_BYTES:
        return QUANT_BYTES[method]
    return _dtype_bytes(config, hf)


def _dtype_bytes(config: ExperimentConfig, hf: dict) -> int:
    dtype = config.dtype
    if dtype == "auto":
        dtype = hf.get("dtype") or hf.get("torch_dtype") or "float32"
    return DTYPE_BYTES.get(dtype, 4)


def _kv_bytes(config: ExperimentConfig, hf: dict) -> float:
    section = getattr(config, config.backend, None)
    if str(getattr(section, "kv_cache_dtype", "auto")).startswith("fp8"):
        return 1
    return _dtype_bytes(config, hf)


def estimate(config: ExperimentConfig, model_dir: Path | None, label: str, device: Device,
             footprint: ModelFootprint | None = None) -> MemoryEstimate:
    """One point's estimate (see docs/method.md, "Memory estimate"); ``footprint``: what the backend read from its
    model file itself (a GGUF), used instead of config.json."""
    traits, knob_value = _traits(config, device)
    batch = traits.batch
    common = dict(label=label, backend=config.backend, device=device, batch=batch, batch_size=knob_value,
                  batch_knob=config.spec.batch_knob or "no batch knob")
    if config.scenario == "serving" and config.serving.endpoint is not None:  # the user's server holds the model
        return MemoryEstimate(**common, parameters=None, weights=None, kv_cache=None, activations=None,
                              parameters_source=f"lem starts no server: it drives yours at {config.serving.endpoint}, "
                              "whose memory is its own", budget=None, budget_rule="not estimated")
    if footprint is not None:
        return _from_footprint(config, footprint, common, device)
    hf = read_hf_config(model_dir) if model_dir is not None else None
    if hf is None:
        why = "no config.json on this host yet (the runner downloads the model, or converts the embedded one, "\
            "on its first run)" if model_dir is None else f"no readable config.json in {model_dir}"
        return MemoryEstimate(**common, parameters=None, parameters_source=why, weights=None, kv_cache=None,
                              activations=None, budget=device.memory_bytes, budget_rule="not estimated")
    text = hf.get("text_config") if isinstance(hf.get("text_config"), dict) else hf
    text = {**{ours: text[theirs] for ours, theirs in _ALIASES.items() if theirs in text}, **text}
    c = SimpleNamespace(**{k: v for k, v in text.items() if isinstance(k, str) and k.isidentifier()})
    shapes = None if "quantization_config" in hf else checkpoint_shapes(model_dir)
    try:
        formula = llama_like_size(c)
    except (AttributeError, TypeError, ZeroDivisionError):
        formula = None
    if shapes:
        params, source = stored_parameters(shapes), "safetensors headers"
    elif formula is not None:
        params, source = formula.total, "config.json, Llama-like formula"
    else:
        return MemoryEstimate(**common, parameters=None, parameters_source="config.json lacks the dimensions",
                              weights=None, kv_cache=None, activations=None, budget=device.memory_bytes,
                              budget_rule="not estimated")
    weights = params * _weight_bytes(config, hf)
    layers, heads, hidden = (getattr(c, k, None) for k in ("num_hidden_layers", "num_attention_heads", "hidden_size"))
    if not all(isinstance(v, int) and v > 0 for v in (layers, heads, hidden, getattr(c, "vocab_size", None))):
        return MemoryEstimate(**common, parameters=params, parameters_source=f"{source}; config.json lacks the "
                              "layer/head/hidden/vocab sizes for the KV cache", weights=weights, kv_cache=None,
                              activations=None, budget=device.memory_bytes, budget_rule="not estimated")
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    head_dim = getattr(c, "head_dim", None) or hidden // heads
    seq = config.max_input_tokens + config.max_output_tokens
    kv_per_seq = 2 * layers * kv_heads * head_dim * seq * _kv_bytes(config, hf)
    kv = kv_per_seq * batch
    act_bytes = _dtype_bytes(config, hf)
    inter = getattr(c, "intermediate_size", None) or 4 * hidden

    def activations_for(b: int) -> int:
        tokens = b * config.max_input_tokens
        if traits.prefill_tokens_cap is not None:  # the engine prefills at most this many tokens per step
            tokens = min(tokens, traits.prefill_tokens_cap)
        out = tokens * (4 * hidden + 2 * inter) * act_bytes + b * c.vocab_size * 4
        if traits.materialises_attention:  # attention scores of one layer, when the kernel materialises them
            out += b * heads * config.max_input_tokens ** 2 * act_bytes
        return out

    activations = activations_for(batch)
    budget, rule, problems = device.memory_bytes, f"{device.name}", []
    if traits.gpu_budget_fraction is not None and device.kind == "cuda" and budget is not None:
        budget = budget * traits.gpu_budget_fraction
        rule = f"{traits.gpu_budget_fraction:g} x {device.name} ({config.backend} preallocates it)"
    if traits.cpu_kv_bytes is not None and device.kind == "cpu":
        space = traits.cpu_kv_bytes
        if kv_per_seq > space:
            problems.append(f"one sequence of {seq} tokens needs {size(kv_per_seq)} of KV cache, more than "
                            f"{traits.cpu_kv_field} {size(space)}")
        kv = space  # preallocated whatever the batch; the engine runs fewer sequences at once when it is short
        rule = f"{device.name}; KV = {traits.cpu_kv_field}"
    total = weights + kv + activations
    notes = []
    if traits.schedules_fewer and device.kind == "cuda" and budget is not None and total > budget:
        # the engine schedules fewer sequences when its KV space is short; it cannot start without room for one
        floor = weights + activations_for(1) + kv_per_seq
        if floor > budget:
            problems.append(f"needs ~{size(floor)} for one sequence (weights {size(weights)} + KV cache "
                            f"{size(kv_per_seq)} + activations {size(activations_for(1))}) but {rule} offers "
                            f"{size(budget)}")
        else:
            notes.append(f"the batch of {batch} needs {size(kv)} of KV cache; {config.backend} will run fewer sequences "
                         "at once")
    elif budget is not None and total > budget:
        problems.insert(0, f"needs ~{size(total)} (weights {size(weights)} + KV cache {size(kv)} + activations "
                           f"{size(activations)}) but {rule} offers {size(budget)}")
    return MemoryEstimate(**common, parameters=params, parameters_source=source, weights=weights, kv_cache=kv,
                          activations=activations, budget=budget, budget_rule=rule, problems=tuple(problems),
                          notes=tuple(notes))


def _from_footprint(config: ExperimentConfig, f: ModelFootprint, common: dict, device: Device) -> MemoryEstimate:
    """Weights as the file stores them, the KV cache the engine allocates for its context, and the activation term
    at float32 (one layer's live tensors during prefill, plus the float32 logits)."""
    batch = common["batch"]
    kv = f.kv_bytes * batch
    activations = batch * config.max_input_tokens * (4 * f.hidden + 2 * f.intermediate) * 4 + batch * f.vocab * 4
    total = f.weight_bytes + kv + activations
    budget = device.memory_bytes
    problems = ((f"needs ~{size(total)} (weights {size(f.weight_bytes)} + KV cache {size(kv)} + activations "
                 f"{size(activations)}) but {device.name} offers {size(budget)}",)
                if budget is not None and total > budget else ())
    return MemoryEstimate(**common, parameters=f.parameters, parameters_source=f.source, weights=f.weight_bytes,
                          kv_cache=kv, activations=activations, budget=budget,
                          budget_rule=f"{device.name}; KV for {f.context_tokens} tokens", problems=problems,
                          notes=f.notes)


def _footprint(config: ExperimentConfig) -> ModelFootprint | None:
    """The backend's own reading of its model file (spec ``footprint``), where it has one and the file is here."""
    if not config.spec.footprint or (config.scenario == "serving" and config.serving.endpoint is not None):
        return None
    from llenergymeasure.errors import ConfigError
    from llenergymeasure.models import resolve_model

    try:
        model = resolve_model(config)
    except ConfigError:
        return None
    path = Path(model.host_path) if model.mount_root is not None else None
    return config.spec.model_footprint(config, path) if path is not None and path.is_file() else None


def _model_dir(config: ExperimentConfig) -> Path | None:
    """The model's folder on this host, as a run resolves it; None for one the runner would download, or the
    embedded model before its first run converts it (a dry run converts nothing)."""
    from lem_runner.contract.config import EMBEDDED_DEFAULT_MODEL

    from llenergymeasure.models import resolve_model
    from llenergymeasure.models.embedded import converted_embedded_model

    if config.model == EMBEDDED_DEFAULT_MODEL:
        return converted_embedded_model()
    model = resolve_model(config)
    return Path(model.host_path) if model.mount_root is not None else None


def estimate_points(points: list[tuple[str, ExperimentConfig]], device_of=device_for) -> list[MemoryEstimate]:
    """Every (label, config) point of a plan, each against the device it would run on."""
    out = []
    for label, config in points:
        footprint = _footprint(config)
        model_dir = None if footprint is not None else _model_dir(config)
        out.append(estimate(config, model_dir, label, device_of(config), footprint))
    return out


def render_estimates(console, estimates: list[MemoryEstimate]) -> None:
    """The points as a table fitted to the terminal (labels whole), with the budget and whether each fits. The batch
    is the batch knob's value, as ``lem results`` shows it; when fewer prompts than that run at once, a note says
    how many the estimate holds."""
    from rich.markup import escape

    from llenergymeasure.render.fit import Column, print_keyed
    from llenergymeasure.render.text import fewer_prompts

    def col(name: str, cells: list[str], right: bool = True) -> Column:
        return Column(name, cells, right)

    backends = list(dict.fromkeys(e.backend for e in estimates))
    devices = list(dict.fromkeys(e.device.name for e in estimates))
    figures = [] if len(backends) == 1 else [col("backend", [e.backend for e in estimates], right=False)]
    figures += [] if len(devices) == 1 else [col("device", [escape(e.device.name) for e in estimates], right=False)]
    figures += [
        col("params", [f"{e.parameters / 1e6:,.1f}M" if e.parameters is not None else "?" for e in estimates]),
        col("batch", [str(e.batch_size) for e in estimates]),
        col("weights", [size(e.weights) for e in estimates]), col("KV cache", [size(e.kv_cache) for e in estimates]),
        col("activations", [size(e.activations) for e in estimates]),
        col("total", [size(e.total) for e in estimates]), col("budget", [size(e.budget) for e in estimates]),
        col("fits", ["[red]no[/]" if not e.fits else "yes" if e.total is not None else "[yellow]unknown[/]"
                     for e in estimates])]
    title = "memory estimate (docs/method.md, Memory estimate)" + "".join(
        f" · {escape(v[0])}" for v in (backends, devices) if len(v) == 1)
    print_keyed(console, title, [e.label for e in estimates], [], figures)
    for e in estimates:
        if e.total is None:
            console.print(f"[yellow]not estimated[/] {escape(e.label)}: {escape(e.parameters_source)}")
        if e.batch < e.batch_size:  # the summary's words (render/summary.py batch_text)
            console.print(f"[dim]note[/] {escape(e.label)}: batch {e.batch_size} ({escape(e.batch_knob)}"
                          f"{fewer_prompts(e.batch_size, e.batch, 'offline')}): the estimate holds {e.batch}")
        for note in e.notes:
            console.print(f"[yellow]note[/] {escape(e.label)}: {escape(note)}")
