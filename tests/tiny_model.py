"""A tiny random Llama with a byte-level BPE tokenizer trained in-process: a real model that loads in about a second.

Greedy output is deterministic for a given seed, which the tests rely on (same tokens locally and in a container).
"""

from __future__ import annotations

from pathlib import Path

_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "energy per token is measured in joules",
    "a tiny model for fast and honest tests of the measuring tool",
    "batches of prompts are padded on the left before generation",
] * 50


def build_tiny_llama(target: Path, seed: int = 0) -> Path:
    """Write a tokenizer and a random-weight LlamaForCausalLM (hidden 256, 4 layers) into ``target``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    target.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<s>", "</s>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(target)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=64,
        max_position_embeddings=1024,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(target)
    return target
