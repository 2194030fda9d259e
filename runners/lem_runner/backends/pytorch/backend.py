"""PyTorch backend: transformers ``generate``, batched with left padding, timed per decoding step.

A ``BaseStreamer`` subclass records a timestamp for every step of the whole batch (transformers calls ``put`` once
with the prompt, then once per generated token, after the token is on the CPU, so GPU work is already synchronised).
That gives TTFT and inter-token latency for every request in the same run as the energy window. The batch is
prefilled as soon as ``generate`` starts, so that start is each record's ``scheduled`` time; batches after the first
wait for the earlier ones, and that wait is queueing (see measurement.latency).
"""

from __future__ import annotations

import time

from lem_runner.backends.base import input_token_limit, library_versions
from lem_runner.backends.checkpoint import is_routed_expert, model_shape, with_moe
from lem_runner.backends.pytorch.check import pytorch_problems
from lem_runner.backends.pytorch.settings import (
    compile_forward,
    compiled_graphs,
    generate_kwargs,
    load_kwargs,
    read_back,
    watch_cache_class,
)
from lem_runner.backends.pytorch.spec import SPEC
from lem_runner.contract.config import ExperimentConfig
from lem_runner.contract.engine_args import EngineArgumentError
from lem_runner.records import GenerationRecord, LoadedModel, ParameterCounts

#: how this backend timestamps tokens (recorded in every result)
LATENCY_METHOD = (
    "a transformers streamer timestamps every decoding step of the batch (time.perf_counter after each step's tokens reach the CPU); TTFT = first step - submission (the start of the measured pass: earlier batches are queueing); batch_ttft = first step - the batch's generate() start"
)
#: distributions whose versions the environment record carries
LIBRARIES = list(SPEC.libraries)
_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


class _StepClock:
    """Streamer that timestamps each generation step; the first ``put`` carries the prompt and is skipped."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._seen_prompt = False

    def put(self, value) -> None:
        now = time.perf_counter()
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        self.times.append(now)

    def end(self) -> None:
        pass


def _synthetic_model(model_path: str, kwargs: dict, device: str, seed: int):
    """The architecture from config.json with seeded random weights, built directly on ``device`` (no checkpoint read,
    no copy through host memory), so any size of model can be measured without downloading weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    dtype = kwargs["dtype"]
    if dtype == "auto":
        dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32"
    extra = {k: v for k, v in kwargs.items() if k == "attn_implementation"}
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, str(dtype).removeprefix("torch.")),
                                                 **extra)
    return model.eval()


class PyTorchBackend:
    name = "pytorch"

    def __init__(self, config: ExperimentConfig, model_path: str) -> None:
        self.config = config
        self.model_path = model_path
        self.batch_size: int | None = config.pytorch.batch_size
        self._model = None
        self._tokenizer = None
        self._device = "cpu"
        self._eos: set[int] = set()
        self._settings: dict = {}  # engine_settings: filled at load, completed by the first generate

    def load(self) -> LoadedModel:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cfg = self.config
        transformers.set_seed(cfg.seed)
        use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
        self._device = f"cuda:{cfg.devices[0]}" if use_cuda else "cpu"

        problems = pytorch_problems(cfg, self.model_path, in_runner=True)
        if problems:  # before anything loads: a config error (exit 2), not a failed load
            raise EngineArgumentError("; ".join(problems))

        tok = AutoTokenizer.from_pretrained(self.model_path)
        tok.padding_side = "left"
        tok.truncation_side = "right"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        kwargs = load_kwargs(cfg, _DTYPES.get(cfg.dtype, "auto"), self._device)
        if cfg.synthetic_weights:
            model = _synthetic_model(self.model_path, kwargs, self._device, cfg.seed)
        elif "device_map" in kwargs:  # accelerate placed it (several GPUs, or a quantized model on its device)
            model = AutoModelForCausalLM.from_pretrained(self.model_path, **kwargs).eval()
            self._device = str(model.device)  # inputs go where the first layers are
        else:
            model = AutoModelForCausalLM.from_pretrained(self.model_path, **kwargs).to(self._device).eval()
        if cfg.pytorch.compile_mode:
            compile_forward(model, cfg.pytorch.compile_mode)

        eos = model.generation_config.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tok.eos_token_id is not None:
            self._eos.add(tok.eos_token_id)
        self._model, self._tokenizer = model, tok
        self._load_kwargs = kwargs
        self._settings = read_back(model, kwargs, self._generate_kwargs(), cfg)
        watch_cache_class(model, self._settings)

        embed = model.get_input_embeddings().weight
        head = model.get_output_embeddings()
        counts = with_moe(ParameterCounts(
            total=sum(p.numel() for p in model.parameters()),
            input_embedding=embed.numel(),
            output_projection=head.weight.numel() if head is not None else 0,
            tied_embeddings=head is not None and head.weight.data_ptr() == embed.data_ptr(),
        ), model.config, sum(p.numel() for n, p in model.named_parameters() if is_routed_expert(n)))
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        return LoadedModel(
            latency_method=LATENCY_METHOD,
            device_kind="cuda" if use_cuda else "cpu",
            parameters=counts,
            shape=model_shape(model.config),
            parameter_source="the loaded model's tensors" + (" (synthetic random weights)" if cfg.synthetic_weights
                                                              else ""),
            libraries=library_versions(LIBRARIES),
            cuda_version=torch.version.cuda if use_cuda else None,
            details={
                "dtype": dtype,
                "device": self._device,
                "batch_size": self.batch_size,
                "attn_implementation": getattr(model.config, "_attn_implementation", None),
                "architecture": type(model).__name__,
                "torch_threads": torch.get_num_threads(),
                "synthetic_weights": cfg.synthetic_weights,
            },
            engine_settings=self._settings,
        )

    def _generate_kwargs(self) -> dict:
        return generate_kwargs(self.config, self._tokenizer.pad_token_id)

    def _output_length(self, row: list[int]) -> int:
        if self.config.force_output_length:
            return len(row)
        for i, token in enumerate(row):
            if token in self._eos:
                return i + 1
        return len(row)

    def generate(self, prompts: list[str]) -> list[GenerationRecord]:
        import torch

        cfg = self.config
        enc = self._tokenizer(prompts, return_tensors="pt", padding=True, truncation=True,
                              max_length=input_token_limit(cfg))
        enc = enc.to(self._device)
        clock = _StepClock()
        with torch.inference_mode():
            start = time.perf_counter()
            out = self._model.generate(**enc, streamer=clock, **self._generate_kwargs())
        if cfg.pytorch.compile_mode:
            self._settings["torch_compile_graphs"] = compiled_graphs()
        new_tokens = out[:, enc["input_ids"].shape[1] :].tolist()
        input_lengths = enc["attention_mask"].sum(dim=1).tolist()
        prompt_rows = enc["input_ids"].tolist()  # left-padded: a prompt's tokens are its row's last n_in
        records = []
        for row, n_in, prompt in zip(new_tokens, input_lengths, prompt_rows):
            n_out = self._output_length(row)
            records.append(GenerationRecord(int(n_in), n_out, start, clock.times[:n_out], scheduled=start,
                                            prompt_ids=tuple(prompt[len(prompt) - int(n_in):]),
                                            output_ids=tuple(row[:n_out])))
        return records

    def adopt(self, config: ExperimentConfig) -> None:
        """Serve a later run of an engine session on the model already loaded: its batch size, lengths, decoding
        and seed (re-seeded, as load() seeds the first run). Nothing else carries over: generate keeps no cache."""
        import transformers

        self.config = config
        self.batch_size = config.pytorch.batch_size
        transformers.set_seed(config.seed)

    def loaded_for_run(self, loaded: LoadedModel) -> LoadedModel:
        """The first load's record, with what this run sets itself (adopted): its batch size and the generate
        arguments in its engine settings, so a reused engine's result says what this run used."""
        import dataclasses

        self._settings = read_back(self._model, self._load_kwargs, self._generate_kwargs(), self.config)
        watch_cache_class(self._model, self._settings)
        return dataclasses.replace(loaded, details={**loaded.details, "batch_size": self.batch_size},
                                   engine_settings=self._settings)

    def loglikelihood(self, pairs: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """Task accuracy's scoring hook (lem_runner.task): each continuation's summed log-likelihood and is_greedy."""
        from lem_runner.backends.pytorch.loglikelihood import continuation_loglikelihoods

        return continuation_loglikelihoods(self._model, self._tokenizer, self._device, pairs)

    def next_token_logprobs(self, prompt_ids: list[int], continuation_ids: list[int],
                            top_k: int | None) -> list[dict[int, float]] | list[list[float]]:
        """Output fidelity's hook (lem_runner.quality): the next-token log-probabilities at each continuation
        position, teacher-forced (top_k None: the full vocabulary; else the top_k and the continuation's token)."""
        from lem_runner.backends.pytorch.logprobs import next_token_logprobs

        return next_token_logprobs(self._model, self._device, prompt_ids, continuation_ids, top_k)

    def rolling_loglikelihood(self, text: str) -> tuple[float, int, int]:
        """Perplexity's hook (lem_runner.quality): the text's summed token log-likelihood, its token count and the
        window size."""
        from lem_runner.backends.pytorch.logprobs import rolling_loglikelihood

        return rolling_loglikelihood(self._model, self._tokenizer, self._device, text)

    def close(self) -> None:
        self._model = None
        self._tokenizer = None
