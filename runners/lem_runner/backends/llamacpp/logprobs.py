"""Teacher-forced log-probabilities on the loaded llama.cpp model, for output fidelity, perplexity and task accuracy
(lem_runner.quality, lem_runner.task): continuation log-likelihoods, next-token distributions along given tokens and
a text's rolling log-likelihood, each from the engine's own logits. No token is generated or sampled, so decoding
settings play no part.

The measured engine (the ``Llama`` that generates inside the energy window) keeps only the last position's logits
(``logits_all`` False: llama-cpp-python then asks llama.cpp for one output row per batch). Scoring needs a row at
every position, so it runs on a **second llama.cpp context** on the same loaded model (``llama_init_from_model``: the
weights are shared, not loaded again), made on the first scoring call after a window and freed before the next run
starts or the model closes. It copies the measured context's settings (threads, ``flash_attn``, ``type_k`` /
``type_v``, ``offload_kqv``) and sizes its own KV cache; ``n_batch`` / ``n_ubatch`` follow the config as ``Llama``
applies them. So the measured run is the one configured (no ``logits_all`` buffers, no extra output rows), and the
scores come from the same model, kernels and KV-cache types. Each sequence starts from an empty KV cache.

Logits come back as float32 (llama.cpp's output buffer); the log-softmax is taken in float64 (numpy).
"""

from __future__ import annotations

import numpy as np

from lem_runner.task.split import split_continuation as _split

#: the most tokens the scoring context is sized for ahead of need (the perplexity window's 1024 plus its one)
DEFAULT_SCORING_CTX = 1025
#: rows turned into float64 log-softmax at once (64 x a 150k vocabulary is 77 MB)
ROW_BLOCK = 64


class GGUFTokenizer:
    """The GGUF's own tokenizer in the shape lem_runner.quality.perplexity and the continuation split read
    (``tok(text, add_special_tokens=False)["input_ids"]``, ``bos_token_id``, ``eos_token_id``). Special-token
    markers in the text are parsed (``special=True``), as transformers' tokenizers parse them; no BOS is added here
    (the callers add it)."""

    def __init__(self, llm) -> None:
        self._llm = llm
        bos, eos = int(llm.token_bos()), int(llm.token_eos())
        self.bos_token_id = bos if bos >= 0 else None
        self.eos_token_id = eos if eos >= 0 else None

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        if not text:
            return {"input_ids": []}
        ids = self._llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=True)
        return {"input_ids": list(ids)}


class ScoringContext:
    """A second llama.cpp context on ``llm``'s model whose decode calls return logits at the positions asked for."""

    def __init__(self, llm, n_ctx: int, n_batch: int, n_ubatch: int) -> None:
        import llama_cpp

        self._lib = llama_cpp
        measured = llm.context_params
        params = type(measured).from_buffer_copy(measured)  # the measured context's settings, by value
        params.n_ctx = int(n_ctx)
        params.n_batch = min(int(n_batch), int(n_ctx))
        params.n_ubatch = min(int(n_ubatch), params.n_batch)
        params.n_seq_max = 1
        params.embeddings = False
        ctx = llama_cpp.llama_init_from_model(llm.model, params)
        if ctx is None:
            raise RuntimeError(f"llama.cpp could not make a scoring context of {n_ctx} tokens")
        self.ctx = ctx
        self.n_ctx = int(llama_cpp.llama_n_ctx(ctx))
        self.n_batch = int(params.n_batch)
        self.n_vocab = int(llm.n_vocab())
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)

    def _chunks(self, tokens: list[int], first: int):
        """One pass over ``tokens`` in ``n_batch`` chunks on an empty KV cache, output rows asked for at positions
        ``first`` on only; yields (row index from ``first``, the chunk's float32 logits, a view valid until the
        next decode)."""
        lib, n = self._lib, len(tokens)
        if n > self.n_ctx:
            raise ValueError(f"{n} tokens do not fit the scoring context of {self.n_ctx}")
        if not 0 <= first < n:
            raise ValueError(f"first scored position {first} outside {n} tokens")
        lib.llama_memory_clear(lib.llama_get_memory(self.ctx), True)
        batch = self._batch
        for lo in range(0, n, self.n_batch):
            hi = min(n, lo + self.n_batch)
            batch.n_tokens = hi - lo
            for j, pos in enumerate(range(lo, hi)):
                batch.token[j] = int(tokens[pos])
                batch.pos[j] = pos
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = 0
                batch.logits[j] = pos >= first
            rc = lib.llama_decode(self.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc} on the scoring context")
            wanted = hi - max(lo, first)
            if wanted > 0:
                logits = np.ctypeslib.as_array(lib.llama_get_logits(self.ctx), shape=(wanted * self.n_vocab,))
                yield max(lo, first) - first, logits.reshape(wanted, self.n_vocab)

    def _blocks(self, tokens: list[int], first: int):
        """(row index, float64 log-softmax of up to ROW_BLOCK rows) over the rows from ``first`` on."""
        for r0, logits in self._chunks(tokens, first):
            for b in range(0, len(logits), ROW_BLOCK):
                rows = logits[b: b + ROW_BLOCK].astype(np.float64)
                top = rows.max(axis=1, keepdims=True)
                yield r0 + b, rows - (top + np.log(np.exp(rows - top).sum(axis=1, keepdims=True)))

    def log_softmax_rows(self, tokens: list[int], first: int) -> np.ndarray:
        """float64 log-softmax of the logits after each of ``tokens[first:]`` (row r: the distribution of the token
        after ``tokens[first + r]``); rows before ``first`` are not computed (no output row asked for)."""
        out = np.empty((len(tokens) - first, self.n_vocab), dtype=np.float64)
        for r, logp in self._blocks(tokens, first):
            out[r: r + len(logp)] = logp
        return out

    def picked(self, tokens: list[int], first: int, targets: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """For each row from ``first`` (as ``log_softmax_rows``), the float64 log-probability of ``targets[r]`` and
        whether it is the argmax there, without keeping the vocabulary-wide rows."""
        target = np.asarray(targets)
        lp, greedy = np.empty(len(target)), np.empty(len(target), dtype=bool)
        for r, logp in self._blocks(tokens, first):
            t = target[r: r + len(logp)]
            lp[r: r + len(logp)] = logp[np.arange(len(t)), t]
            greedy[r: r + len(logp)] = logp.argmax(axis=1) == t
        return lp, greedy

    def close(self) -> None:
        lib, ctx, self.ctx = self._lib, self.ctx, None
        if ctx is not None:
            lib.llama_batch_free(self._batch)
            lib.llama_free(ctx)


def next_token_logprobs(scorer: ScoringContext, prompt_ids: list[int], continuation_ids: list[int],
                        top_k: int | None) -> list[dict[int, float]] | list[list[float]]:
    """log p(. | prompt, continuation[:j]) for each continuation position j, from one pass over prompt +
    continuation but its last token. top_k None: the full vocabulary's list; else a dict of the top_k tokens and the
    continuation's own token."""
    if not prompt_ids or not continuation_ids:
        raise ValueError("next_token_logprobs needs at least one prompt and one continuation token")
    seq = [*prompt_ids, *continuation_ids[:-1]]
    logp = scorer.log_softmax_rows(seq, len(prompt_ids) - 1)
    if top_k is None:
        return logp.tolist()
    k = min(int(top_k), logp.shape[1])
    out = []
    for row, token in zip(logp, continuation_ids):
        idx = np.argpartition(-row, k - 1)[:k]
        entry = {int(i): float(row[i]) for i in idx}
        entry[int(token)] = float(row[token])
        out.append(entry)
    return out


def split_continuation(tokenizer: GGUFTokenizer, context: str, continuation: str) -> tuple[list[int], int]:
    """lm-eval's split (lem_runner.task.split) with the GGUF's own tokenizer."""
    return _split(lambda text: tokenizer(text)["input_ids"], tokenizer.bos_token_id, tokenizer.eos_token_id,
                  context, continuation)


def continuation_loglikelihoods(scorer: ScoringContext, tokenizer: GGUFTokenizer,
                                pairs: list[tuple[str, str]]) -> list[tuple[float, bool]]:
    """For each (context, continuation): the summed log p(token | earlier tokens) over the continuation's tokens
    (float64) and whether each of them is the argmax there (lm-eval's ``is_greedy``)."""
    out = []
    for context, continuation in pairs:
        whole, start = split_continuation(tokenizer, context, continuation)
        lp, greedy = scorer.picked(whole[:-1], start - 1, whole[start:])
        out.append((float(lp.sum()), bool(greedy.all())))
    return out


def rolling_loglikelihood(scorer: ScoringContext, tokenizer: GGUFTokenizer, context: int | None,
                          text: str) -> tuple[float, int, int]:
    """Perplexity's sum over the sequence and windows of lem_runner.quality.perplexity (the model's trained context
    ``context``, the scoring context's ``n_ctx`` as the engine's limit): each window one pass over its tokens but the
    last, the scored tokens' float64 log-probabilities summed."""
    from lem_runner.quality.perplexity import rolling_windows, text_sequence, window_size

    seq = text_sequence(tokenizer, text)
    size = window_size(context, scorer.n_ctx)
    total = 0.0
    for start, end, scored in rolling_windows(len(seq), size):
        lp, _ = scorer.picked(seq[start: end - 1], end - 1 - scored - start, seq[end - scored: end])
        total += float(lp.sum())
    return total, len(seq) - 1, size

