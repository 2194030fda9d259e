"""The perplexity truth the fidelity tests share (the PyTorch precision sweep here, the cross-backend study in its
vLLM image): the bundled text scored with the model's own logits through transformers, in the windows
docs/method.md defines, written out from lm-eval's algorithm rather than taken from lem's code."""

from __future__ import annotations

import math


def lm_eval_rolling_windows(tokens: list[int], prefix: int, max_seq_len: int):
    """(inputs, targets) of lm-eval's loglikelihood_rolling (lm_eval.utils.get_rolling_token_windows, context_len 1),
    written out from its algorithm: the first window predicts max_seq_len tokens after the prefix, each later one the
    next max_seq_len with the max_seq_len tokens before its last as input (so the last window reaches back)."""
    first = min(max_seq_len, len(tokens))
    yield [prefix] + tokens[: first - 1], tokens[:first]
    predicted = first
    while predicted < len(tokens):
        n = min(len(tokens) - predicted, max_seq_len)
        end = predicted + n
        yield tokens[end - max_seq_len - 1: end - 1], tokens[end - n: end]
        predicted += n


def perplexity_truth(model, tok, text: str, window: int) -> tuple[float, int]:
    """The text's perplexity as docs/method.md defines it: lm-eval's rolling windows of window - 1 inputs after BOS,
    each one forward pass here, float64 log-softmax."""
    import torch

    total, n = 0.0, 0
    tokens = tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        for inputs, targets in lm_eval_rolling_windows(tokens, tok.bos_token_id, window - 1):
            lp = torch.log_softmax(model(input_ids=torch.tensor([inputs])).logits[0].double(), dim=-1)
            total += float(lp[-len(targets):].gather(1, torch.tensor(targets)[:, None]).sum())
            n += len(targets)
    assert n == len(tokens)
    return math.exp(-total / n), n
