"""Truths for llamacpp tests from llama-cpp-python alone (nothing of lem's): what the library itself counts."""

from __future__ import annotations


def library_prompt_tokens(prompts: list[str]) -> list[int]:
    """llama-cpp-python's own completion usage.prompt_tokens for each prompt, on the embedded SmolLM2 GGUF."""
    import llama_cpp
    from llenergymeasure.models.embedded import _gguf_path

    llm = llama_cpp.Llama(model_path=str(_gguf_path()), n_ctx=128, n_threads=1, verbose=False)
    counts = [llm.create_completion(p, max_tokens=1, temperature=0.0)["usage"]["prompt_tokens"] for p in prompts]
    llm.close()
    return counts


def f32_gguf(source, target):
    """``source`` GGUF rewritten with every tensor dequantised to float32 by gguf-py (metadata copied, file type
    ALL_F32): a GGUF that llama.cpp runs in float32, on the very weights transformers reads from it."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(source))
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(str(target), arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value = int(gguf.LlamaFileType.ALL_F32) if name == "general.file_type" else field.contents()
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, value, vtype, sub)
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        writer.add_tensor(t.name, data.reshape([int(d) for d in reversed(t.shape)]))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def _log_softmax(rows):
    import numpy as np

    rows = np.asarray(rows, dtype=np.float64)
    top = rows.max(axis=1, keepdims=True)
    return rows - (top + np.log(np.exp(rows - top).sum(axis=1, keepdims=True)))


def library_llama(path, n_ctx: int = 1100, **kwargs):
    """A plain ``llama_cpp.Llama`` keeping every position's logits (``logits_all=True``: llama-cpp-python's own way
    to get them), on 2 threads."""
    import llama_cpp

    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=2, n_threads_batch=2, logits_all=True,
                           verbose=False, **kwargs)


def library_logprobs(llm, tokens: list[int]):
    """float64 log-softmax of llama-cpp-python's ``scores`` after ``reset(); eval(tokens)``: row i is the
    distribution of the token after ``tokens[i]``."""
    llm.reset()
    llm.eval(tokens)
    return _log_softmax(llm.scores[: len(tokens)])


def library_greedy(llm, prompt_ids: list[int], max_tokens: int) -> list[int]:
    """llama-cpp-python's own greedy stream (temperature 0) from an empty cache, cut after the first
    end-of-generation token."""
    import llama_cpp

    llm.reset()
    out = []
    for token in llm.generate(prompt_ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0, reset=True):
        out.append(int(token))
        if len(out) >= max_tokens or llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            break
    return out


def library_perplexity(llm, text: str, window: int) -> tuple[float, int]:
    """The text's perplexity over lm-eval's rolling windows (tests/quality_truth.py) after BOS, each window one
    ``eval`` of llama-cpp-python with every position's logits."""
    import math

    from quality_truth import lm_eval_rolling_windows

    tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    total, n = 0.0, 0
    for inputs, targets in lm_eval_rolling_windows(tokens, llm.token_bos(), window - 1):
        lp = library_logprobs(llm, inputs)[-len(targets):]
        total += float(sum(lp[i, t] for i, t in enumerate(targets)))
        n += len(targets)
    assert n == len(tokens)
    return math.exp(-total / n), n
