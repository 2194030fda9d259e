"""TensorRT-LLM backend: ``tensorrt_llm.LLM`` (1.2.x), every request streamed so that each output token is timestamped.

NOT RUN HERE. TensorRT-LLM cannot be installed on the machine this was written on (PyPI holds only a stub that fetches
the wheel from NVIDIA's index, which is out of reach, and there is no GPU). The code follows TensorRT-LLM's documented
LLM API and its source; the pure mapping functions below are unit-tested, and ``tests/gpu/test_tensorrt_gpu.py`` runs
the real thing on a GPU host with the ``nvcr.io/nvidia/tensorrt-llm/release:1.2.1`` image. Sources, by choice:

* Workflow. In 1.x ``from tensorrt_llm import LLM`` is the PyTorch workflow (``class LLM(_TorchLLM)``, which passes
  ``backend="pytorch"`` itself); the TensorRT-engine workflow is ``from tensorrt_llm._tensorrt_engine import LLM``
  (``_TrtLLM``). Passing TRT-only arguments to the PyTorch class raises ("Please use 'from
  tensorrt_llm._tensorrt_engine import LLM' instead"). Source: NVIDIA/TensorRT-LLM ``tensorrt_llm/llmapi/llm.py``
  (``BaseLLM``/``_TorchLLM._validate_args_for_torch_backend``), ``tensorrt_llm/_tensorrt_engine/__init__.py``;
  ``trtllm-bench``/``trtllm-serve`` import both the same way (PR #9199); docs ``torch.html`` (1.1) quick start.
* Arguments. ``model``, ``dtype``, ``tensor_parallel_size``, ``pipeline_parallel_size``, ``max_batch_size``,
  ``max_num_tokens``, ``max_seq_len``, ``max_input_len``, ``kv_cache_config`` are ``BaseLlmArgs`` fields;
  ``quant_config`` is a ``TrtLlmArgs`` field only (the PyTorch workflow reads quantization from a pre-quantized
  ModelOpt checkpoint). ``KvCacheConfig(free_gpu_memory_fraction, enable_block_reuse, dtype)``, ``QuantConfig``,
  ``QuantAlgo`` import from ``tensorrt_llm.llmapi``. FP8 KV cache is ``KvCacheConfig(dtype="fp8")`` on the PyTorch
  workflow, but ``QuantConfig(kv_cache_quant_algo=FP8)`` on the engine workflow, whose ``TrtLlmArgs`` asserts
  ``kv_cache_config.dtype == "auto"``. Source: ``tensorrt_llm/llmapi/llm_args.py`` (``BaseLlmArgs``, ``TrtLlmArgs``,
  ``TorchLlmArgs``), docs ``features/quantization.md``, ``examples/kvcacheconfig``,
  ``examples/llm-api/_tensorrt_engine/llm_quantization.py``, ``tensorrt_llm/quantization/mode.py`` (``QuantAlgo``).
* Sampling. ``SamplingParams(max_tokens, temperature, top_p, top_k, seed, min_tokens, ignore_eos, detokenize)``;
  with none of temperature/top_p/top_k given, decoding is greedy (the documented rule, stable across 1.x); top_k 0
  means all logits. Source: ``tensorrt_llm/sampling_params.py`` docstring.

Timing method (TTFT and ITL). ``LLM.generate`` returns finished outputs only, and ``return_perf_metrics`` keeps just
the first and last token's engine time. So every prompt is submitted together with
``llm.generate_async(token_ids, sampling_params, streaming=True)`` from one asyncio coroutine, and each request's
``RequestOutput`` is iterated with ``async for``: in streaming mode the executor sends one response per request per
iteration (``stream_interval`` defaults to 1), and each ``__anext__`` handles exactly one response, growing
``outputs[0].token_ids``. Each response is stamped with ``time.perf_counter()`` as this process takes it, and every
token it added gets that time (several tokens in one response, e.g. with speculative decoding, share it). The times
are arrival times in this process: they trail the engine by the IPC hop from TensorRT-LLM's worker process and by the
asyncio wake-up, a near-constant offset that shifts TTFT slightly and cancels in ITL. ``start`` is taken just before
the first request is submitted, so TTFT includes queueing, as for the vLLM backend. Source: ``llm.py``
(``generate_async``), ``tensorrt_llm/executor/result.py`` (``GenerationResult.__anext__``, ``_handle_response``),
``examples/llm-api/llm_inference_async_streaming.py``.

Prompts are tokenised here with the model's tokenizer (truncated to ``max_input_tokens``, or to exactly the synthetic
``input_tokens``, as the PyTorch backend does) and passed as token ids, so input counts are exact and identical across
backends; text is not detokenised (``detokenize=False``). Parameter counts come from the checkpoint, not the model:
the PyTorch workflow keeps the model in its worker process, out of reach. They are the tensor shapes in its
safetensors headers, or for a pre-quantized checkpoint the Llama-like formula over its HF config (see the vLLM
backend's ``checkpoint_parameter_counts`` / ``llama_like_parameter_counts``); ``details["parameter_source"]`` says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import os
import time
from collections.abc import AsyncIterable, Callable
from pathlib import Path

from lem_runner.backends.base import input_token_limit, library_versions
from lem_runner.backends.checkpoint import model_shape, parameter_counts
from lem_runner.backends.tensorrt.check import tensorrt_problems
from lem_runner.backends.tensorrt.spec import SPEC
from lem_runner.contract.config import ExperimentConfig
from lem_runner.contract.engine_args import EngineArgumentError, jsonable
from lem_runner.records import GenerationRecord, LoadedModel

#: how this backend timestamps tokens (recorded in every result)
LATENCY_METHOD = (
    "each request streamed through generate_async(streaming=True), every response timestamped on arrival in the runner (time.perf_counter); TTFT from submission (the start of the measured pass), queueing included; prefill start estimated from the responses"
)
#: distributions whose versions the environment record carries (``tensorrt-llm`` matches the ``tensorrt_llm`` wheel:
#: importlib.metadata normalises the name)
LIBRARIES = list(SPEC.libraries)

#: ``tensorrt.llm_backend`` -> (module, attribute) of the ``LLM`` class that runs that workflow
LLM_CLASSES = {
    "pytorch": ("tensorrt_llm", "LLM"),
    "tensorrt": ("tensorrt_llm._tensorrt_engine", "LLM"),
}

#: ``tensorrt.quantization`` -> ``tensorrt_llm.llmapi.QuantAlgo`` member name
QUANT_ALGOS = {
    "fp8": "FP8",
    "int4_awq": "W4A16_AWQ",
    "w4a8_awq": "W4A8_AWQ",
    "int8_sq": "W8A8_SQ_PER_CHANNEL",
    "nvfp4": "NVFP4",
}



def llm_class(config: ExperimentConfig) -> tuple[str, str]:
    """Module and attribute of the ``LLM`` class for the configured workflow."""
    return LLM_CLASSES[config.tensorrt.llm_backend]


def llm_args(config: ExperimentConfig, model_path: str) -> dict:
    """The ``LLM(...)`` keyword arguments as plain values; ``kv_cache_config`` and ``quant_config`` are dicts of their
    classes' fields (``to_llm_kwargs`` builds the objects). Fields left at None are omitted, so TensorRT-LLM applies
    its own default.

    ``max_input_len`` (engine workflow only) is the prompt limit this run tokenises to: a TensorRT engine is built for
    a maximum input length and TensorRT-LLM's default (1024) would reject longer prompts. Raises ValueError for
    ``quantization`` on the PyTorch workflow, which takes no ``quant_config``."""
    t = config.tensorrt
    args: dict = {
        "model": model_path,
        "dtype": config.dtype,
        "tensor_parallel_size": t.tensor_parallel_size,
        "pipeline_parallel_size": t.pipeline_parallel_size,
        "max_batch_size": t.max_batch_size,
        "max_num_tokens": t.max_num_tokens,
        "max_seq_len": t.max_seq_len,
    }
    kv: dict = {
        "free_gpu_memory_fraction": t.kv_cache_free_gpu_memory_fraction,
        "enable_block_reuse": t.kv_cache_enable_block_reuse,
    }
    if t.llm_backend == "pytorch":
        if t.quantization is not None:
            raise ValueError(
                f"tensorrt.quantization '{t.quantization}' needs tensorrt.llm_backend 'tensorrt': TensorRT-LLM's "
                "PyTorch workflow takes no quant_config (it runs a pre-quantized checkpoint, e.g. from ModelOpt, "
                "given as the model)"
            )
        kv["dtype"] = t.kv_cache_dtype
        if config.synthetic_weights:
            args["load_format"] = "dummy"
    else:
        args["max_input_len"] = input_token_limit(config)
        quant = {}
        if t.quantization is not None:
            quant["quant_algo"] = QUANT_ALGOS[t.quantization]
        if t.kv_cache_dtype == "fp8":
            quant["kv_cache_quant_algo"] = "FP8"
        if quant:
            args["quant_config"] = quant
    args["kv_cache_config"] = {k: v for k, v in kv.items() if v is not None}
    return {**{k: v for k, v in args.items() if v is not None}, **t.engine_args}


def sampling_args(config: ExperimentConfig) -> dict:
    """``tensorrt_llm.SamplingParams`` keyword arguments. Greedy gives none of temperature/top_p/top_k (TensorRT-LLM's
    greedy rule); sampling gives all three, min_p when set, and the seed; repetition/presence/frequency penalties
    whenever set (``SamplingParams`` has all four). ``force_output_length`` sets ``ignore_eos`` and
    ``min_tokens = max_tokens``."""
    cfg = config
    d = cfg.decoding
    kw: dict = {"max_tokens": cfg.max_output_tokens, "detokenize": False}
    if d.do_sample:
        kw.update(temperature=d.temperature, top_p=d.top_p, top_k=d.top_k, seed=cfg.seed)
        if d.min_p:
            kw["min_p"] = d.min_p
    kw.update(d.penalties())  # under greedy decoding too
    if cfg.force_output_length:
        kw.update(ignore_eos=True, min_tokens=cfg.max_output_tokens)
    return kw


def device_problem(config: ExperimentConfig) -> str | None:
    """Why the configured devices cannot be honoured, or None. TensorRT-LLM's worker puts rank r on CUDA device
    ``r % device_count`` (``BaseWorker._get_comm_ranks_device_id``), so a run uses the first tp x pp visible devices
    whatever the config says; any other list would have NVML read the energy of GPUs the model is not on. The runner
    binds the configured GPUs as ordinals 0..n-1 before the engine starts (lem_runner.devices), so this holds for a
    run through the runner; it guards a backend created directly."""
    t = config.tensorrt
    n = t.tensor_parallel_size * t.pipeline_parallel_size
    wanted = list(range(n))
    if sorted(config.devices) != wanted:
        return (
            f"devices: TensorRT-LLM runs on the first {n} visible CUDA device(s), ordinals {wanted}, not "
            f"{config.devices}; list {wanted} and pick the physical GPUs with CUDA_VISIBLE_DEVICES"
        )
    return None


def to_llm_kwargs(args: dict) -> dict:
    """``llm_args``' plain dicts turned into TensorRT-LLM objects (imports tensorrt_llm)."""
    from tensorrt_llm.llmapi import KvCacheConfig, QuantAlgo, QuantConfig

    kwargs = dict(args)
    kwargs["kv_cache_config"] = KvCacheConfig(**args["kv_cache_config"])
    if "quant_config" in args:
        kwargs["quant_config"] = QuantConfig(**{k: QuantAlgo[v] for k, v in args["quant_config"].items()})
    return kwargs


async def stream_token_times(stream: AsyncIterable, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """One request's token times: for each streamed response, ``clock()`` once, given to every token it added to
    ``outputs[0].token_ids``. Should a final response shorten the list (stop-word trimming), the times follow."""
    times: list[float] = []
    async for output in stream:
        now = clock()
        n = len(output.outputs[0].token_ids)
        if n >= len(times):
            times.extend([now] * (n - len(times)))
        else:
            del times[n:]
    return times


def _scalar(value):
    """A value fit for ``LoadedModel.details``: scalars as they are, anything else as its string."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(getattr(value, "value", value))


def resolved_settings(args: dict, llm_settings) -> dict:
    """The arguments lem passed to ``LLM(...)`` and, for each, the value on the validated ``llm.args`` (its LlmArgs
    model, where TensorRT-LLM resolved defaults); a name is missing from ``resolved`` where the args lack it."""
    resolved = {}
    for key in args:
        if key != "model" and llm_settings is not None and hasattr(llm_settings, key):
            resolved[key] = jsonable(getattr(llm_settings, key))
    return {"arguments": jsonable(args), "resolved": resolved}


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, config: ExperimentConfig, model_path: str) -> None:
        self.config = config
        self.model_path = model_path
        self.batch_size: int | None = None  # TensorRT-LLM takes the whole prompt set and schedules it itself
        self._llm = None
        self._tokenizer = None

    def load(self) -> LoadedModel:
        import torch
        from transformers import AutoConfig, AutoTokenizer

        cfg = self.config
        if not torch.cuda.is_available():
            raise RuntimeError("the tensorrt backend needs an NVIDIA GPU, and torch sees no CUDA device")
        problem = device_problem(cfg)
        if problem:
            raise RuntimeError(problem)
        args = llm_args(cfg, self.model_path)  # raises before anything heavy for an impossible combination
        problems = tensorrt_problems(cfg, self.model_path, in_runner=True)
        if problems:  # before the engine starts: a config error (exit 2)
            raise EngineArgumentError("; ".join(problems))
        module, attr = llm_class(cfg)

        import tensorrt_llm

        llm_cls = getattr(importlib.import_module(module), attr)
        self._llm = llm_cls(**to_llm_kwargs(args))
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self._tokenizer.truncation_side = "right"

        hf_config = AutoConfig.from_pretrained(self.model_path)
        counts, source = parameter_counts(Path(self.model_path), hf_config)
        checkpoint_dtype = getattr(hf_config, "dtype", None) or getattr(hf_config, "torch_dtype", None)
        llm_settings = getattr(self._llm, "args", None)
        kv_settings = getattr(llm_settings, "kv_cache_config", None)
        quant = args.get("quant_config", {})
        return LoadedModel(
            latency_method=LATENCY_METHOD,
            device_kind="cuda",
            parameters=counts,
            parameter_source=source,
            shape=model_shape(hf_config),
            engine_in_process=False,
            libraries=library_versions(LIBRARIES),
            cuda_version=torch.version.cuda,
            details={
                "dtype": cfg.dtype if cfg.dtype != "auto" else _scalar(checkpoint_dtype),
                "device": "cuda",
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "llm_backend": cfg.tensorrt.llm_backend,
                "llm_class": f"{module}.{attr}",
                "tensorrt_llm_version": _scalar(getattr(tensorrt_llm, "__version__", None)),
                "architecture": (getattr(hf_config, "architectures", None) or [None])[0],
                "tensor_parallel_size": cfg.tensorrt.tensor_parallel_size,
                "pipeline_parallel_size": cfg.tensorrt.pipeline_parallel_size,
                "max_batch_size": _scalar(getattr(llm_settings, "max_batch_size", None)),
                "max_num_tokens": _scalar(getattr(llm_settings, "max_num_tokens", None)),
                "max_seq_len": _scalar(getattr(llm_settings, "max_seq_len", None)),
                "kv_cache_free_gpu_memory_fraction": _scalar(getattr(kv_settings, "free_gpu_memory_fraction", None)),
                "kv_cache_enable_block_reuse": _scalar(getattr(kv_settings, "enable_block_reuse", None)),
                "kv_cache_dtype": _scalar(getattr(kv_settings, "dtype", None)),
                "quant_algo": quant.get("quant_algo"),
                "kv_cache_quant_algo": quant.get("kv_cache_quant_algo"),
                "parameter_source": source,
            },
            engine_settings=resolved_settings(args, llm_settings),
        )

    async def _run(self, token_ids: list[list[int]], params) -> tuple[float, list[list[float]]]:
        """Submit every prompt, then stream them all; generate_async needs the running loop (its result queues bind
        to it)."""
        llm = self._llm
        outputs = []
        try:
            start = time.perf_counter()
            for ids in token_ids:
                outputs.append(llm.generate_async(list(ids), sampling_params=params, streaming=True))
            times = await asyncio.gather(*(stream_token_times(out) for out in outputs))
        except BaseException:
            for out in outputs:  # do not leave the engine generating for requests nobody reads
                with contextlib.suppress(Exception):  # the original failure is the one to report
                    if not out.finished:
                        out.abort()
            raise
        return start, list(times)

    def generate(self, prompts: list[str]) -> list[GenerationRecord]:
        from tensorrt_llm import SamplingParams

        max_len = input_token_limit(self.config)
        token_ids = self._tokenizer(prompts, truncation=True, max_length=max_len)["input_ids"]
        params = SamplingParams(**sampling_args(self.config))
        start, times = asyncio.run(self._run(token_ids, params))
        return [GenerationRecord(len(ids), len(t), start, t) for ids, t in zip(token_ids, times)]

    def adopt(self, config: ExperimentConfig) -> None:
        """Serve a later run of an engine session: its sampling and lengths. (A config with KV block reuse on gets an
        engine of its own: lem_runner.contract.engine.reuse_refusal.)"""
        self.config = config

    def close(self) -> None:
        llm, self._llm, self._tokenizer = self._llm, None, None
        if llm is not None:
            llm.shutdown()  # stops the executor and its worker processes
            del llm
            gc.collect()
