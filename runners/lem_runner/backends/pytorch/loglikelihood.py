"""Continuation log-likelihoods on the loaded transformers model, for task accuracy (lem_runner.task): teacher-forced,
one forward pass per (context, continuation), no generation, so decoding settings play no part."""

from __future__ import annotations


def continuation_loglikelihoods(model, tokenizer, device: str,
                                pairs: list[tuple[str, str]]) -> list[tuple[float, bool]]:
    """For each (context, continuation): sum of log p(token | earlier tokens) over the continuation's tokens, and
    whether each of them is also the argmax (lm-eval's ``is_greedy``). The continuation's tokens are those of
    ``context + continuation`` past the context's own, as lm-eval splits them; an empty context is preceded by the
    BOS token (EOS when there is none)."""
    import torch

    from lem_runner.task.split import split_continuation

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    out = []
    with torch.inference_mode():
        for context, continuation in pairs:
            whole, start = split_continuation(encode, tokenizer.bos_token_id, tokenizer.eos_token_id, context,
                                              continuation)
            ids = torch.tensor([whole[:-1]], device=device)
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)[start - 1:]
            target = torch.tensor(whole[start:], device=device)
            picked = logp.gather(1, target[:, None])[:, 0]
            out.append((float(picked.sum()), bool((logp.argmax(dim=-1) == target).all())))
    return out
