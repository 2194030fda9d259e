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


def _save_tokenizer(target: Path):
    """Train the byte-level BPE tokenizer on the corpus and save it into ``target``; returns it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

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
    return fast


def build_tiny_llama(target: Path, seed: int = 0) -> Path:
    """Write a tokenizer and a random-weight LlamaForCausalLM (hidden 256, 4 layers) into ``target``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    fast = _save_tokenizer(target)
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


#: the tiny Mixtral's shape, for tests that compute its parameters by hand
TINY_MIXTRAL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "head_dim": 16, "num_local_experts": 8, "num_experts_per_tok": 2}


def build_tiny_mixtral(target: Path, seed: int = 0) -> Path:
    """Write the same tokenizer and a random-weight MixtralForCausalLM (8 experts, 2 per token) into ``target``."""
    import torch
    from transformers import MixtralConfig, MixtralForCausalLM

    fast = _save_tokenizer(target)
    torch.manual_seed(seed)
    config = MixtralConfig(
        vocab_size=len(fast), max_position_embeddings=1024, bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, tie_word_embeddings=False, **TINY_MIXTRAL,
    )
    MixtralForCausalLM(config).save_pretrained(target)
    return target


def hand_active_body(cfg: dict, vocab: int = 512) -> tuple[int, int, int]:
    """(active non-embedding parameters, all non-embedding parameters, output projection) of a Mixtral, by hand."""
    h, i, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    q = cfg["num_attention_heads"] * cfg["head_dim"]
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]
    e, k = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    attention = h * q + 2 * h * kv + q * h  # q, k, v, o
    router = h * e
    one_expert = 3 * h * i  # w1 (gate), w3 (up), w2 (down)
    norms = 2 * h
    active = layers * (attention + router + k * one_expert + norms) + h  # + final norm
    every = layers * (attention + router + e * one_expert + norms) + h
    return active, every, vocab * h


def hand_request_flops(cfg: dict, n_in: int, n_out: int, vocab: int = 512) -> float:
    """Forward FLOPs of one request, step by step: the prompt's forward pass, then one pass per further token."""
    body, _, head = hand_active_body(cfg, vocab)
    n_d = cfg["num_hidden_layers"] * cfg["num_attention_heads"] * cfg["head_dim"]
    flops = 2.0 * body * n_in + 2.0 * head  # logits for the last prompt position only
    flops += sum(2 * n_d * 2 * p for p in range(1, n_in + 1))  # QK^T and AV: position p attends to p keys
    for step in range(1, n_out):
        flops += 2.0 * (body + head) + 4.0 * n_d * (n_in + step)
    return flops


#: the reasoning model's chat template: the generation prompt opens the reasoning (DeepSeek-R1's own template ends in
#: ``<think>`` too), so the reasoning parser reads the output as reasoning until ``</think>``
REASONING_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                      "{% if add_generation_prompt %}<|assistant|><think>{% endif %}")


def build_tiny_reasoner(target: Path, reasoning_tokens: int = 3, answer_cycle: int = 3) -> dict:
    """A tiny Llama whose greedy output after ``<think>`` is known token by token: ``reasoning_tokens`` word tokens,
    ``</think>``, then ``answer_cycle`` word tokens over and over — a reasoning model in miniature, for vLLM's
    ``deepseek_r1`` reasoning parser (which needs ``<think>``/``</think>`` in the vocabulary: the tiny random model's
    tokenizer has neither, and its random output would never close a reasoning).

    How: every layer's output projections (attention ``o_proj``, MLP ``down_proj``) are zero, so the residual stream
    at the last position is the embedding of the last token and the logits are ``lm_head @ rmsnorm(E[t])``; each
    chain token's successor row of ``lm_head`` is set to its embedding (rows summed where two tokens share a
    successor), every other row 0. The successor's logit is then ∝ |E[t]|², any other's ∝ E[t]·E[u], about
    1/sqrt(hidden) = 1/16 of it for random embeddings: the chain is the argmax at every step, whatever the position.
    Returns the chain's ids and texts (the truth the test checks the parser's split against)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    fast = _save_tokenizer(target)
    fast.add_special_tokens({"additional_special_tokens": ["<think>", "</think>"]})
    fast.chat_template = REASONING_TEMPLATE
    fast.save_pretrained(target)
    start, end = fast.convert_tokens_to_ids("<think>"), fast.convert_tokens_to_ids("</think>")
    vocab = fast.get_vocab()
    words = sorted(i for t, i in vocab.items() if t.startswith("Ġ") and t[1:].isalpha() and len(t) > 3)
    chain_words = words[:reasoning_tokens + answer_cycle]
    reasoning, answer = chain_words[:reasoning_tokens], chain_words[reasoning_tokens:]
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, head_dim=64, max_position_embeddings=1024,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    sequence = [start, *reasoning, end, *answer]
    successor = {a: b for a, b in zip(sequence, sequence[1:])}
    successor[answer[-1]] = answer[0]  # the answer repeats
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        head = torch.zeros_like(model.lm_head.weight)
        for a, b in successor.items():
            head[b] += emb[a] / emb[a].norm() * 50.0
        model.lm_head.weight.copy_(head)
    model.save_pretrained(target)
    return {"start": start, "end": end, "reasoning": reasoning, "answer": answer,
            "answer_text": [fast.decode([i]) for i in answer]}
