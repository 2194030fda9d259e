"""Teacher-forced log-probabilities on the loaded vLLM engine, from its ``prompt_logprobs``: continuation
log-likelihoods for task accuracy (lem_runner.task), next-token distributions along given tokens (output
fidelity's KL) and a text's rolling log-likelihood (perplexity). No token is generated that is read: each request
is prefill only (``max_tokens=1``).

vLLM 0.32 returns, per prompt position ``i >= 1`` (position 0 has no predecessor: None), a dict {token_id: Logprob}
holding the ``k`` most likely tokens for position ``i`` given tokens ``< i`` (``k = SamplingParams.prompt_logprobs``)
plus the prompt's own token there, each with its log-probability (log-softmax of the logits in float32, before any
sampling processor) and its rank in the vocabulary (1 + the tokens with a strictly greater log-probability). ``k`` is
capped by the engine argument ``max_logprobs`` (default 20; ``-1``: the vocabulary) and a larger request is refused.
Requests with prompt log-probabilities skip reading the prefix cache (vLLM sets ``skip_reading_prefix_cache``), so a
warm cache cannot drop positions.
"""

from __future__ import annotations

from lem_runner.task.split import split_continuation as _split


def split_continuation(tokenizer, context: str, continuation: str) -> tuple[list[int], int]:
    """lm-eval's split (lem_runner.task.split) with the HF tokenizer vLLM loaded, no special tokens added."""
    return _split(lambda text: tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.bos_token_id,
                  tokenizer.eos_token_id, context, continuation)


def logprob_cap(llm) -> int:
    """The most log-probabilities per position this engine returns: its ``max_logprobs`` (``-1``: the vocabulary)."""
    model_config = llm.llm_engine.model_config
    cap = int(model_config.max_logprobs)
    return int(model_config.get_vocab_size()) if cap == -1 else cap


def prompt_logprobs(llm, sequences: list[list[int]], k: int) -> list[list[dict | None]]:
    """Each sequence's prompt log-probabilities (one entry per token, the first None), ``k`` most likely per
    position plus the sequence's own token; one ``generate`` call for all, greedy, one token generated and ignored."""
    from vllm import SamplingParams, TokensPrompt

    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=k, detokenize=False)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=s) for s in sequences], params, use_tqdm=False)
    by_prompt = [list(out.prompt_logprobs) for out in outputs]
    for seq, got in zip(sequences, by_prompt):
        if len(got) != len(seq):
            raise RuntimeError(f"vLLM returned {len(got)} prompt log-probabilities for a {len(seq)}-token prompt")
    return by_prompt


def continuation_loglikelihoods(llm, tokenizer, pairs: list[tuple[str, str]]) -> list[tuple[float, bool]]:
    """For each (context, continuation): the summed log p(token | earlier tokens) over the continuation's tokens, and
    whether each of them is the most likely token there (rank 1: lm-eval's ``is_greedy``), from vLLM's
    ``prompt_logprobs`` with ``k = 0`` (only the prompt's own token and its rank)."""
    split = [split_continuation(tokenizer, c, x) for c, x in pairs]
    rows = prompt_logprobs(llm, [whole for whole, _ in split], 0)
    out = []
    for (whole, start), row in zip(split, rows):
        picked = [row[i][whole[i]] for i in range(start, len(whole))]
        out.append((float(sum(p.logprob for p in picked)), all(p.rank == 1 for p in picked)))
    return out


def next_token_logprobs(llm, prompt_ids: list[int], continuation_ids: list[int],
                        top_k: int | None) -> list[dict[int, float]]:
    """Teacher-forced next-token distributions along ``continuation_ids`` after ``prompt_ids``: one dict per
    continuation position j, {token_id: log p(token | prompt + continuation[:j])} of the ``top_k`` most likely
    tokens, plus ``continuation[j]`` itself when it is not among them (vLLM always returns it), so a dict holds
    ``top_k`` or ``top_k + 1`` entries. vLLM gives no full vocabulary unless the engine was started with
    ``max_logprobs: -1`` (vllm.engine_args): ``top_k`` None means the engine's cap (``max_logprobs``, default 20), and a
    larger ``top_k`` is refused naming that setting."""
    if not prompt_ids:
        raise ValueError("next_token_logprobs needs at least one prompt token (the first position has no predecessor)")
    if not continuation_ids:
        return []
    cap = logprob_cap(llm)
    k = cap if top_k is None else int(top_k)
    if not 1 <= k <= cap:
        raise ValueError(f"top_k {top_k}: this vLLM engine returns 1 to {cap} log-probabilities per position "
                         f"(vllm.engine_args max_logprobs; -1 for the whole vocabulary)")
    whole = [*prompt_ids, *continuation_ids]
    (row,) = prompt_logprobs(llm, [whole], k)
    return [{int(t): float(lp.logprob) for t, lp in row[i].items()} for i in range(len(prompt_ids), len(whole))]


def rolling_loglikelihood(llm, tokenizer, text: str) -> tuple[float, int, int]:
    """Perplexity's sum: log p(token | earlier tokens in its window) over the text's tokens, their count and the
    window size, for the sequence and windows of lem_runner.quality.perplexity (the PyTorch backend scores the same
    ones). Each window is one prompt (``prompt_logprobs = 0``: each prompt token's own log-probability, float32
    log-softmax), all in one ``generate`` call; the window is the model's context less one, at most 1024, and at
    most the engine's ``max_model_len`` less one (vLLM needs room for the one generated token)."""
    from lem_runner.quality.perplexity import rolling_windows, text_sequence, window_size

    seq = text_sequence(tokenizer, text)
    model_config = llm.llm_engine.model_config
    context = getattr(model_config.hf_config, "max_position_embeddings", None)
    size = window_size(context, model_config.max_model_len)
    windows = rolling_windows(len(seq), size)
    rows = prompt_logprobs(llm, [seq[start:end] for start, end, _ in windows], 0)
    total = 0.0
    for (start, end, scored), row in zip(windows, rows):
        n = end - start
        total += sum(float(row[i][seq[start + i]].logprob) for i in range(n - scored, n))
    return total, len(seq) - 1, size
