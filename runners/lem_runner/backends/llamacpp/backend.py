"""llama.cpp backend: ``llama_cpp.Llama`` on a GGUF file as it is, one prompt at a time, every token timestamped.

Timing method. ``Llama.generate(tokens)`` is llama-cpp-python's token stream (``create_completion(stream=True)`` is
built on it): it decodes the prompt in ``n_batch`` chunks, then yields each sampled token before decoding it, so one
``time.perf_counter()`` per yielded token is the moment that token exists in this process. The text stream is not
used: it holds tokens back while their bytes are an incomplete UTF-8 character, so a chunk may carry several tokens,
and it detokenises every token, work the other backends do not do.

Prompts are tokenised with the GGUF's own tokenizer (``Llama.tokenize``, its BOS rule, special-token markers parsed
as transformers parses them) and truncated to the input
limit, keeping the start, as the PyTorch backend does; the count handed to the engine is the input count. Output
tokens are counted as they are yielded, the end-of-generation token included (as transformers counts it), up to
``max_output_tokens``. ``force_output_length`` bans every end-of-generation token (a logits processor setting their
logits to -inf, as transformers' ``min_new_tokens`` does), so each request yields exactly ``max_output_tokens``.

llama-cpp-python keeps the last sequence's KV cache and reuses its longest common prefix with the next prompt. The
warm-up runs the very prompts the window measures, so that reuse would hide prefill work: every prompt starts from an
empty cache (``Llama.reset()``, after which ``generate`` evaluates the whole prompt).

Each prompt is handed to the engine when the previous one has finished (``batch_size`` 1): its ``start`` and
``scheduled`` are that moment; the wait for earlier prompts is queueing (measurement.latency).

Records keep the prompt's ids as handed to the engine and every yielded token (the end-of-generation token included)
for output fidelity. The quality hooks (``next_token_logprobs``, ``rolling_loglikelihood``, ``loglikelihood``) run
after the window on a second llama.cpp context on the same model (backends/llamacpp/logprobs.py), so the measured
context stays as configured.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from lem_runner.backends.base import input_token_limit, library_versions
from lem_runner.backends.llamacpp.check import ggml_type, llamacpp_problems
from lem_runner.backends.llamacpp.spec import SPEC
from lem_runner.contract.config import ExperimentConfig
from lem_runner.contract.engine_args import EngineArgumentError, jsonable
from lem_runner.records import GenerationRecord, LoadedModel, ModelShape, ParameterCounts

#: how this backend timestamps tokens (recorded in every result)
LATENCY_METHOD = (
    "llama-cpp-python's token stream (Llama.generate): time.perf_counter as each sampled token is yielded, one prompt at a time from an empty KV cache; TTFT from submission (the start of the measured pass: earlier prompts are queueing); prefill starts when the prompt is handed to the engine"
)
LIBRARIES = list(SPEC.libraries)
NEG_INF = float("-inf")


def context_length(config: ExperimentConfig) -> int:
    """``n_ctx``: the configured one, else the most one request needs (prompt limit + output)."""
    n_ctx = config.llamacpp.n_ctx
    return n_ctx if n_ctx is not None else config.max_input_tokens + config.max_output_tokens


def llama_args(config: ExperimentConfig, model_path: str) -> dict:
    """``llama_cpp.Llama`` keyword arguments: every llamacpp field under its argument name (None: left to
    llama-cpp-python's default), the seed, the GPU the config lists (with layers offloaded, on that GPU alone), then
    the ``llama_args`` pass-through (its keys never overlap a field: the section refuses that)."""
    import llama_cpp

    s = config.llamacpp
    args = {
        "model_path": model_path, "seed": config.seed, "n_ctx": context_length(config), "n_batch": s.n_batch,
        "n_ubatch": s.n_ubatch, "n_threads": s.n_threads, "n_threads_batch": s.n_threads_batch,
        "n_gpu_layers": s.n_gpu_layers, "flash_attn": s.flash_attn, "offload_kqv": s.offload_kqv,
        "use_mmap": s.use_mmap, "use_mlock": s.use_mlock, "verbose": False,
        "type_k": ggml_type(s.type_k) if s.type_k else None, "type_v": ggml_type(s.type_v) if s.type_v else None,
    }
    if s.n_gpu_layers != 0:
        args.update(main_gpu=config.devices[0], split_mode=llama_cpp.LLAMA_SPLIT_MODE_NONE)
    return {**{k: v for k, v in args.items() if v is not None}, **s.llama_args}


def sampling_args(config: ExperimentConfig) -> dict:
    """``Llama.generate`` sampling arguments: greedy is temperature 0 (llama.cpp's greedy sampler; the others are
    then unused); sampling takes temperature, top_p, top_k (0: off) and min_p; penalties whenever set."""
    d = config.decoding
    kw: dict = {"temp": 0.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0}
    if d.do_sample:
        kw.update(temp=d.temperature, top_p=d.top_p, top_k=d.top_k or 0, min_p=d.min_p or 0.0)
    penalties = d.penalties()
    if "repetition_penalty" in penalties:
        kw["repeat_penalty"] = penalties["repetition_penalty"]
    for key in ("presence_penalty", "frequency_penalty"):
        if key in penalties:
            kw[key] = penalties[key]
    return kw


def gguf_contents(path: str) -> tuple[ParameterCounts, str, dict[str, int]]:
    """Parameter counts from the GGUF's tensor table (exact, no weights read), the most common weight type, and the
    tensor types counted. The output projection is ``output.weight``; without one it is tied to ``token_embd``."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    sizes = {t.name: int(t.n_elements) for t in reader.tensors}
    types = Counter(t.tensor_type.name.lower() for t in reader.tensors if t.name.endswith(".weight")
                    and len(t.shape) > 1)
    embed = sizes.get("token_embd.weight", 0)
    head = sizes.get("output.weight")
    counts = ParameterCounts(total=sum(sizes.values()), input_embedding=embed,
                             output_projection=head if head is not None else embed, tied_embeddings=head is None)
    return counts, (types.most_common(1)[0][0] if types else "unknown"), dict(types)


def gguf_shape(metadata: dict[str, str]) -> ModelShape | None:
    """Layers and attention width from the GGUF's ``<arch>.*`` keys, None where they are missing."""
    arch = metadata.get("general.architecture")
    try:
        layers = int(metadata[f"{arch}.block_count"])
        heads = int(metadata[f"{arch}.attention.head_count"])
        head_dim = int(metadata.get(f"{arch}.attention.key_length") or
                       int(metadata[f"{arch}.embedding_length"]) // heads)
    except (KeyError, ValueError, ZeroDivisionError):
        return None
    return ModelShape(n_layers=layers, attention_dim=heads * head_dim)


class LlamaCppBackend:
    name = "llamacpp"

    def __init__(self, config: ExperimentConfig, model_path: str) -> None:
        self.config = config
        self.model_path = model_path
        self.batch_size: int | None = 1  # one sequence at a time
        self._llm = None
        self._eog: list[int] = []
        self._scorer = None  # the quality hooks' second context, alive from first use after a window to the next run

    def load(self) -> LoadedModel:
        cfg = self.config
        path = Path(self.model_path)
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF file at {self.model_path}")
        problems = llamacpp_problems(cfg, self.model_path, in_runner=True)
        if problems:  # before anything loads: a config error (exit 2), not a failed load
            raise EngineArgumentError("; ".join(problems))
        import llama_cpp

        on_gpu = cfg.llamacpp.n_gpu_layers != 0
        if on_gpu and not llama_cpp.llama_supports_gpu_offload():
            raise RuntimeError("llamacpp.n_gpu_layers: this llama-cpp-python was built without GPU support "
                               "(a CPU build); set n_gpu_layers: 0")
        args = llama_args(cfg, self.model_path)
        llm = llama_cpp.Llama(**args)
        self._llm = llm
        vocab = llm._model.vocab
        self._eog = [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]
        counts, weight_type, types = gguf_contents(self.model_path)
        metadata = dict(llm.metadata)
        ctx = llm.context_params
        return LoadedModel(
            latency_method=LATENCY_METHOD,
            device_kind="cuda" if on_gpu else "cpu",
            parameters=counts,
            parameter_source="the GGUF file's tensor table",
            shape=gguf_shape(metadata),
            libraries=library_versions(LIBRARIES),
            details={
                "dtype": weight_type,
                "device": f"cuda:{cfg.devices[0]}" if on_gpu else "cpu",
                "batch_size": 1,
                "architecture": metadata.get("general.architecture"),
                "gguf_tensor_types": ", ".join(f"{k}:{v}" for k, v in sorted(types.items())),
                "llama_cpp_version": llama_cpp.__version__,
                "n_ctx": llm.n_ctx(),
                "n_threads": ctx.n_threads,
                "n_threads_batch": ctx.n_threads_batch,
                "n_gpu_layers": cfg.llamacpp.n_gpu_layers,
                "supports_gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
                "timing": "perf_counter per token yielded by Llama.generate",
            },
            engine_settings={
                "arguments": jsonable({k: v for k, v in args.items() if k != "model_path"}),
                "resolved": {"n_ctx": llm.n_ctx(), "n_batch": ctx.n_batch, "n_ubatch": ctx.n_ubatch,
                             "n_threads": ctx.n_threads, "n_threads_batch": ctx.n_threads_batch,
                             "flash_attn_type": int(ctx.flash_attn_type), "type_k": int(ctx.type_k),
                             "type_v": int(ctx.type_v), "offload_kqv": bool(ctx.offload_kqv),
                             "n_gpu_layers": int(llm.model_params.n_gpu_layers)},
                "sampling": sampling_args(cfg),
            },
            engine_in_process=True,
        )

    def _tokens(self, prompt: str) -> list[int]:
        # special=True: markers such as a chat template's <|im_start|> are the special tokens, as transformers'
        # tokenizer (the PyTorch and vLLM backends') parses them, so every backend feeds the same ids
        ids = self._llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        return ids[: input_token_limit(self.config)]

    def _ban_eog(self, _input_ids, scores):
        scores[self._eog] = NEG_INF
        return scores

    def generate(self, prompts: list[str]) -> list[GenerationRecord]:
        import llama_cpp

        cfg, llm = self.config, self._llm
        limit, force = cfg.max_output_tokens, cfg.force_output_length
        eog = set(self._eog)
        processors = llama_cpp.LogitsProcessorList([self._ban_eog]) if force and self._eog else None
        sampling = sampling_args(cfg)
        records = []
        for prompt in prompts:
            tokens = self._tokens(prompt)
            llm.reset()  # an empty KV cache: no prefix reused from the previous prompt
            times: list[float] = []
            out: list[int] = []
            start = time.perf_counter()
            for token in llm.generate(tokens, reset=True, logits_processor=processors, **sampling):
                times.append(time.perf_counter())
                out.append(int(token))
                if len(times) >= limit or (not force and token in eog):
                    break
            records.append(GenerationRecord(len(tokens), len(times), start, times, scheduled=start,
                                            prompt_ids=tuple(tokens), output_ids=tuple(out)))
        return records

    def _scoring(self, need: int = 0):
        """The scoring context (backends/llamacpp/logprobs.py), made after the window on first use and sized for
        ``need`` tokens, and at least the perplexity window's 1024 + 1 where the model's trained context has them
        (not the measured n_ctx, which may be far larger: its KV cache would be allocated twice)."""
        from lem_runner.backends.llamacpp.logprobs import DEFAULT_SCORING_CTX, ScoringContext

        if self._scorer is not None and self._scorer.n_ctx >= need:
            return self._scorer
        self._close_scorer()
        llm, s = self._llm, self.config.llamacpp
        n_ctx = max(need, min(int(llm._model.n_ctx_train()), DEFAULT_SCORING_CTX))
        self._scorer = ScoringContext(llm, n_ctx, n_batch=s.n_batch, n_ubatch=s.n_ubatch or 512)
        return self._scorer

    def _close_scorer(self) -> None:
        scorer, self._scorer = self._scorer, None
        if scorer is not None:
            scorer.close()

    def loglikelihood(self, pairs: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """Task accuracy's scoring hook (lem_runner.task): each continuation's summed log-likelihood and
        is_greedy, on the scoring context."""
        from lem_runner.backends.llamacpp.logprobs import GGUFTokenizer, continuation_loglikelihoods, split_continuation

        tok = GGUFTokenizer(self._llm)
        need = max((len(split_continuation(tok, c, x)[0]) for c, x in pairs), default=0)
        return continuation_loglikelihoods(self._scoring(need), tok, pairs)

    def next_token_logprobs(self, prompt_ids: list[int], continuation_ids: list[int],
                            top_k: int | None) -> list[dict[int, float]] | list[list[float]]:
        """Output fidelity's hook (lem_runner.quality): the next-token log-probabilities at each continuation
        position, teacher-forced (top_k None: the full vocabulary; else the top_k and the continuation's token)."""
        from lem_runner.backends.llamacpp.logprobs import next_token_logprobs

        scorer = self._scoring(len(prompt_ids) + len(continuation_ids))
        return next_token_logprobs(scorer, prompt_ids, continuation_ids, top_k)

    def rolling_loglikelihood(self, text: str) -> tuple[float, int, int]:
        """Perplexity's hook (lem_runner.quality): the text's summed token log-likelihood, its token count and the
        window size (the model's trained context, the scoring context's n_ctx as the engine's limit)."""
        from lem_runner.backends.llamacpp.logprobs import GGUFTokenizer, rolling_loglikelihood

        context = int(self._llm._model.n_ctx_train())
        return rolling_loglikelihood(self._scoring(), GGUFTokenizer(self._llm), context, text)

    def adopt(self, config: ExperimentConfig) -> list[str]:
        """Serve a later run of an engine session: its decoding and lengths on the model already loaded (each prompt
        starts from an empty KV cache, so nothing outlives a run; the scoring context is freed)."""
        self._close_scorer()
        self.config = config
        return []

    def close(self) -> None:
        self._close_scorer()  # a context is freed before its model
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()
