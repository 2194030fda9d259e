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
