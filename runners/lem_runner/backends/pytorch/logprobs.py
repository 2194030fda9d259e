"""Log-probabilities along given tokens on the loaded transformers model, for output fidelity and perplexity
(lem_runner.quality): teacher-forced forward passes, no generation, so decoding settings play no part. What leaves
here is plain Python (lists, dicts, floats): the interface other backends implement too."""

from __future__ import annotations

#: the longest window perplexity scores in one forward pass (its logits are window x vocabulary floats)
MAX_WINDOW = 1024


def next_token_logprobs(model, device: str, prompt_ids: list[int], continuation_ids: list[int],
                        top_k: int | None) -> list[dict[int, float]] | list[list[float]]:
    """log p(. | prompt, continuation[:i]) for each continuation position i, from one forward pass over prompt +
    continuation (its last token needs no input). top_k None: the full vocabulary's list; else a dict of the top_k
    tokens and the continuation's own token."""
    import torch

    if not prompt_ids or not continuation_ids:
        raise ValueError("next_token_logprobs needs at least one prompt and one continuation token")
    with torch.inference_mode():
        ids = torch.tensor([[*prompt_ids, *continuation_ids[:-1]]], device=device)
        # float64: a KL near 1e-6 nats (bfloat16 against float32) is not float32 rounding
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:].double()
        logp = torch.log_softmax(logits, dim=-1)
        if top_k is None:
            return logp.cpu().tolist()
        values, indices = logp.topk(min(top_k, logp.shape[-1]), dim=-1)
        own = logp.gather(1, torch.tensor(continuation_ids, device=device)[:, None])[:, 0]
    out = []
    for vals, idx, token, lp in zip(values.tolist(), indices.tolist(), continuation_ids, own.tolist()):
        row = dict(zip(idx, vals))
        row[token] = lp
        out.append(row)
    return out


def rolling_loglikelihood(model, tokenizer, device: str, text: str) -> tuple[float, int]:
    """Sum of log p(token | earlier tokens) over the text's tokens and their count. The text is preceded by BOS (EOS
    when there is none; with neither, its first token is context only) and scored in disjoint windows of at most the
    model's context (MAX_WINDOW): each window's first token sees the previous window's last token only, as lm-eval's
    loglikelihood_rolling does."""
    import torch

    tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not tokens:
        raise ValueError("the perplexity text has no tokens")
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    seq = [start, *tokens] if start is not None else tokens  # no BOS nor EOS: the first token is not scored
    if len(seq) < 2:
        raise ValueError("the perplexity text has too few tokens")
    window = min(int(getattr(model.config, "max_position_embeddings", MAX_WINDOW) or MAX_WINDOW), MAX_WINDOW)
    total = 0.0
    with torch.inference_mode():
        for lo in range(0, len(seq) - 1, window):
            targets = seq[lo + 1: lo + 1 + window]
            ids = torch.tensor([seq[lo: lo + len(targets)]], device=device)
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
            picked = logp.gather(1, torch.tensor(targets, device=device)[:, None])[:, 0]
            total += float(picked.double().sum())
    return total, len(seq) - 1
