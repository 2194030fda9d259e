"""lm-eval's continuation split (lem_runner.task.split), one rule that the PyTorch, vLLM and llama.cpp scoring hooks
all call: checked on a real tokenizer (the tiny Llama's) against the token ids worked out here by hand from it."""

from __future__ import annotations

import pytest
from lem_runner.task.split import split_continuation


@pytest.fixture(scope="module")
def tok(tiny_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def _encode(tok):
    return lambda text: tok(text, add_special_tokens=False)["input_ids"]


def test_the_continuation_is_the_tokens_past_the_contexts_own(tok):
    ctx = tok("The capital of France is", add_special_tokens=False)["input_ids"]
    whole = tok("The capital of France is Paris", add_special_tokens=False)["input_ids"]
    assert whole[:len(ctx)] == ctx and len(whole) > len(ctx)  # the premise of the split, on this tokenizer
    got = split_continuation(_encode(tok), tok.bos_token_id, tok.eos_token_id, "The capital of France is", " Paris")
    assert got == (whole, len(ctx))


def test_an_empty_context_is_preceded_by_bos_else_eos(tok):
    whole = tok("Paris", add_special_tokens=False)["input_ids"]
    assert split_continuation(_encode(tok), 7, 2, "", "Paris") == ([7, *whole], 1)
    assert split_continuation(_encode(tok), None, 2, "", "Paris") == ([2, *whole], 1)


def test_a_continuation_that_adds_no_token_is_refused(tok):
    with pytest.raises(ValueError, match="adds no token"):
        split_continuation(_encode(tok), tok.bos_token_id, tok.eos_token_id, "Paris", "")


def test_the_vllm_hook_splits_with_the_hf_tokenizer_as_the_pytorch_hook_does(tok):
    # backends/vllm/logprobs.py imports no vLLM at module level: its split runs here on the same HF tokenizer
    from lem_runner.backends.vllm.logprobs import split_continuation as vllm_split

    assert vllm_split(tok, "The capital of France is", " Paris") == split_continuation(
        _encode(tok), tok.bos_token_id, tok.eos_token_id, "The capital of France is", " Paris")
    assert vllm_split(tok, "", "Paris")[1] == 1
