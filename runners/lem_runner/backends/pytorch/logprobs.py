"""Log-probabilities along given tokens on the loaded transformers model, for output fidelity and perplexity
(lem_runner.quality): teacher-forced forward passes, no generation, so decoding settings play no part. What leaves
here is plain Python (lists, dicts, floats): the interface other backends implement too."""

from __future__ import annotations


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


def rolling_loglikelihood(model, tokenizer, device: str, text: str) -> tuple[float, int, int]:
    """Sum of log p(token | earlier tokens in its window) over the text's tokens, their count and the window size:
    the sequence and windows of lem_runner.quality.perplexity (BOS first; windows of the model's context less one,
    at most 1024), each window one forward pass over its tokens but the last, float32 log-softmax."""
    import torch

    from lem_runner.quality.perplexity import rolling_windows, text_sequence, window_size

    seq = text_sequence(tokenizer, text)
    size = window_size(getattr(model.config, "max_position_embeddings", None))
    total = 0.0
    with torch.inference_mode():
        for start, end, scored in rolling_windows(len(seq), size):
            ids = torch.tensor([seq[start: end - 1]], device=device)
            logp = torch.log_softmax(model(input_ids=ids).logits[0, -scored:].float(), dim=-1)
            picked = logp.gather(1, torch.tensor(seq[end - scored: end], device=device)[:, None])[:, 0]
            total += float(picked.double().sum())
    return total, len(seq) - 1, size
