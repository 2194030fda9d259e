"""What `lem run` would refuse about a config on this host, checked by `lem config validate` too, before anything
is loaded or written: a model folder that is not one, a run that needs an NVIDIA GPU where NVML sees none, a
serving endpoint nothing answers at; and bounds that are valid but surely a mistake (an SLO in seconds), which are
warned about, not refused.

The GPU check asks NVML (``host.inventory.gpu_count``), never /dev/nvidia*, so a device NVML reports (a simulated
one included) counts as present. A run whose devices a scheduler allocates (Slurm) is not checked here: its GPUs
are on the node, not on this host.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

from lem_runner.contract import ExperimentConfig
from lem_runner.contract.config import EMBEDDED_DEFAULT_MODEL
from lem_runner.contract.conversation import ESTIMATE_TEMPLATE_TOKENS, ESTIMATE_TOKENS_PER_WORD

from llenergymeasure.errors import ConfigError, SetupError

#: samplers that read an NVIDIA GPU's counters (config.energy.sampler)
GPU_SAMPLERS = ("nvml", "zeus")
#: below these an SLO bound is no latency any request can meet (ms): a loopback HTTP round trip and one forward
#: pass of the smallest model take longer; the likely mistake is a bound written in seconds
IMPLAUSIBLE_SLO_MS = {"ttft_ms": 1.0, "tpot_ms": 0.1, "e2e_ms": 1.0}
#: how long to wait for a serving endpoint to accept a connection before calling it unreachable
ENDPOINT_TIMEOUT_S = 3.0
#: the per-request decode speed (output tokens/s) lem assumes when judging whether the longest answer can finish
#: within serving.request_timeout_s: a slow but ordinary one (a loaded server, a large model, a CPU); an answer that
#: needs more than this to finish in time is warned about (docs/method.md, "Request timeouts")
TIMEOUT_DECODE_TOK_S = 20.0


def model_problem(config: ExperimentConfig) -> str | None:
    """Why ``model`` cannot be used, when it names a folder (missing, or without config.json) or a name that is
    neither a folder nor a hub id: the refusal `lem run` makes when it resolves the model, so validate makes it
    too and both name the file. A hub id is left to the run (it may be downloaded); the embedded model is
    converted on first use."""
    from llenergymeasure.models.resolve import _HUB_ID, resolve_model

    ref = config.model
    if ref == EMBEDDED_DEFAULT_MODEL or (_HUB_ID.match(ref) and not ref.startswith(".")):
        return context_problem(config, None)  # the backend's max_model_len, where set, is known without the model
    try:
        model = resolve_model(config)
    except ConfigError as exc:
        return str(exc)
    return context_problem(config, Path(model.host_path) if model.mount_root is not None else None)


def context_problem(config: ExperimentConfig, model_dir: Path | None) -> str | None:
    """A serving load whose longest request, or longest conversation, cannot fit the model's context."""
    return conversation_context_problem(config, model_dir) or serving_context_problem(config, model_dir)


def context_limit(config: ExperimentConfig, model_dir: Path | None) -> tuple[int | None, str]:
    """The model's context in tokens and where it came from: the backend's ``max_model_len`` where set, else
    config.json's ``max_position_embeddings`` (``n_positions``); None when neither is known here."""
    limit = getattr(getattr(config, config.backend, None), "max_model_len", None)
    source = f"{config.backend}.max_model_len"
    if limit is None and model_dir is not None:
        try:
            hf = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            hf = {}
        limit = hf.get("max_position_embeddings") or hf.get("n_positions")
        source = "the model's max_position_embeddings"
    return (limit if isinstance(limit, int) else None), source


def _longest(dist, default: int) -> int:
    """The longest length a distribution can draw (fixed: its value; else its max), or ``default`` without one."""
    if dist is None:
        return default
    return int(dist.value) if dist.dist == "fixed" else int(dist.max)


def serving_context_problem(config: ExperimentConfig, model_dir: Path | None) -> str | None:
    """'serving: ...' when a single-turn request can be longer than the model's context: shared prefix + the longest
    prompt (serving.input_tokens' longest draw, else max_input_tokens) + the longest answer (serving.output_tokens'
    longest draw, else max_output_tokens). The server would refuse such a request (vLLM: HTTP 400) in the middle
    of the window. A dataset's or trace's own lengths are the controller's to read; they are not checked here."""
    s = config.serving if config.scenario == "serving" else None
    if s is None or s.conversations is not None:
        return None
    limit, source = context_limit(config, model_dir)
    if limit is None:
        return None
    prefix = s.shared_prefix.tokens if s.shared_prefix is not None else 0
    prompt = _longest(s.input_tokens, config.max_input_tokens)
    answer = _longest(s.output_tokens, config.max_output_tokens)
    if prefix + prompt + answer <= limit:
        return None
    parts = (f"shared_prefix {prefix} + " if prefix else "") + f"prompt {prompt} + answer {answer}"
    return (f"serving: the longest request can reach {prefix + prompt + answer} tokens ({parts}), over {source} "
            f"({limit}); lower serving.output_tokens, input_tokens or shared_prefix.tokens")


def conversation_context_problem(config: ExperimentConfig, model_dir: Path | None) -> str | None:
    """'serving.conversations: ...' when a synthetic conversation's longest possible last request (ConversationConfig.
    max_history_tokens: counted by the model folder's tokenizer where there is one, else estimated) exceeds the
    model's context (:func:`context_limit`). None when there is no such section or no limit is known here."""
    conv = config.serving.conversations if config.scenario == "serving" else None
    if conv is None or conv.dataset is not None:
        return None
    limit, source = context_limit(config, model_dir)
    if not isinstance(limit, int):
        return None
    tokenizer = model_tokenizer(model_dir)
    longest = conv.max_history_tokens(config.max_output_tokens, tokenizer)
    if longest <= limit:
        return None
    counted = ("counted by the model's tokenizer" if tokenizer is not None else
               f"estimated at {ESTIMATE_TOKENS_PER_WORD} tokens a word and {ESTIMATE_TEMPLATE_TOKENS} a message: "
               "the model's tokenizer is not on this host")
    return (f"serving.conversations: the last turn (history and answer) can reach {longest} tokens ({counted}), "
            f"over {source} ({limit}); lower turns, user_tokens or answer_tokens")


def model_tokenizer(model_dir: Path | None):
    """The model folder's tokenizer (the one the server loads), or None: no folder here, no tokenizer in it, or
    transformers not installed on this host."""
    if model_dir is None:
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except Exception:  # any failure to load it means: estimate without it
        return None


def needs_gpu(config: ExperimentConfig) -> str | None:
    """The field that makes this run need an NVIDIA GPU (``device``, ``energy.sampler``), or None."""
    if config.device == "cuda":
        return "device"
    if config.energy.sampler in GPU_SAMPLERS:
        return "energy.sampler"
    return None


def gpu_problem(config: ExperimentConfig, host_gpus: int | None = None) -> str | None:
    """'field: ...' when the run needs an NVIDIA GPU and NVML sees none on this host, else None. ``host_gpus``:
    the count NVML reports (asked when None)."""
    if config.runner == "slurm":
        return None
    field = needs_gpu(config)
    if field is None:
        return None
    if host_gpus is None:  # CUDA compute needs a real GPU; an NVML sampler reads simulated ones too
        from lem_runner.contract import nvml

        from llenergymeasure.host.inventory import gpu_count

        host_gpus = gpu_count() if field == "device" else nvml.device_count()
    if host_gpus > 0:
        return None
    value = config.device if field == "device" else config.energy.sampler
    fix = "use device: auto or cpu" if field == "device" else "use energy.sampler: auto, which records why there is " \
        "no GPU energy"
    return f"{field}: '{value}' needs an NVIDIA GPU, and NVML sees none on this host ({fix})"


def refuse_without_gpu(config: ExperimentConfig, source: str) -> None:
    """ConfigError (exit 2) naming ``source`` and the field, when the run needs a GPU this host lacks."""
    problem = gpu_problem(config)
    if problem:
        raise ConfigError(f"{source}: {problem}")


def endpoint_problem(config: ExperimentConfig, timeout_s: float = ENDPOINT_TIMEOUT_S) -> str | None:
    """'serving.endpoint: ...' when nothing accepts a connection at the endpoint's host and port, else None (or
    when the run has no endpoint). A TCP connect only, no HTTP proxy in the way: whether the server speaks the
    OpenAI API is the run's to find out."""
    if config.scenario != "serving" or config.serving.endpoint is None:
        return None
    url = urlsplit(config.serving.endpoint)
    host = url.hostname or "127.0.0.1"
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        return f"serving.endpoint: '{config.serving.endpoint}' has no valid port"
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        why = "connection refused" if isinstance(exc, ConnectionRefusedError) else \
            f"no answer in {timeout_s:g} s" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
    return (f"serving.endpoint: nothing answers at {config.serving.endpoint} ({why}); start your server first, or "
            "drop serving.endpoint to let lem start one")


def refuse_unreachable_endpoint(config: ExperimentConfig, source: str) -> None:
    """SetupError (exit 3: the machine is not ready) when the run's serving endpoint does not answer."""
    problem = endpoint_problem(config)
    if problem:
        raise SetupError(f"{source}: {problem}")


def longest_answer(config: ExperimentConfig) -> int:
    """The longest answer a serving run can ask for: conversations' answer_tokens, else serving.output_tokens'
    longest draw, else max_output_tokens (a dataset's or trace's own lengths are not known here)."""
    s = config.serving
    dist = s.conversations.answer_tokens if s.conversations is not None else s.output_tokens
    return _longest(dist, config.max_output_tokens)


def timeout_warning(config: ExperimentConfig) -> str | None:
    """'serving.request_timeout_s: ...' when the longest answer would need more than TIMEOUT_DECODE_TOK_S tokens/s
    to finish within the timeout: such a request is cut (a timeout, not an answer) on a slower server."""
    s = config.serving
    longest, timeout = longest_answer(config), s.request_timeout_s
    if longest / timeout <= TIMEOUT_DECODE_TOK_S:
        return None
    return (f"serving.request_timeout_s: the longest answer ({longest} tokens) must stream at "
            f"{longest / timeout:.0f} tokens/s or faster to end within {timeout:g} s; at "
            f"{TIMEOUT_DECODE_TOK_S:g} tokens/s per request (a loaded server, a large model) it takes "
            f"{longest / TIMEOUT_DECODE_TOK_S:.0f} s and is cut as a timeout (serving.n_timeouts, flag "
            f"request_timeouts); raise request_timeout_s to {longest / TIMEOUT_DECODE_TOK_S:.0f} or more")


def config_warnings(config: ExperimentConfig) -> list[str]:
    """Valid settings that are surely a mistake: an SLO bound below any latency a request can have (every request
    would miss it; most likely written in seconds); a longest answer that a slow server would not finish within
    serving.request_timeout_s."""
    if config.scenario != "serving":
        return []
    out = [w for w in [timeout_warning(config)] if w]
    for name, floor in IMPLAUSIBLE_SLO_MS.items():
        value = getattr(config.serving.slo, name)
        if value is not None and value < floor:
            out.append(f"serving.slo.{name}: {value:g} ms is below any plausible latency (under {floor:g} ms), so "
                       f"every request would miss it; the bound is in milliseconds ({value * 1000:g} if you meant "
                       f"{value:g} s)")
    return out


def plan_notes(configs: list[ExperimentConfig]) -> list[str]:
    """What `lem config validate` says beside "valid", once each: 'warning: ...' for each setting that is surely a
    mistake, 'note: ...' for a serving endpoint that does not answer now (`lem run` would stop on it, exit 3; the
    server may be started before the run)."""
    lines: list[str] = []
    for config in configs:
        said = [f"warning: {w}" for w in config_warnings(config)]
        said += [f"note: {p}" for p in [endpoint_problem(config)] if p]
        lines += [line for line in said if line not in lines]
    return lines
