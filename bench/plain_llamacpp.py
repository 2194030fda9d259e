"""A plain llama-cpp-python loop, the reference for lem's llamacpp figures: the same GGUF, the same ``Llama``
arguments (n_ctx, threads), the same prompts one at a time, greedy, exactly ``--max-tokens`` tokens each, with
``create_completion`` (the library's ordinary API; no streaming, no timestamps, no lem), in a process of its own as
lem's runner is. Each prompt starts from an empty KV cache (``reset()``), as lem's backend does, so neither side
reuses the previous prompt's prefix. Prints one JSON line: tokens, wall seconds and process CPU seconds of the timed
loop. The prompts come from a JSON file the benchmark writes, so this process imports nothing of lem's.
"""

import argparse
import json
import time

import llama_cpp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="the GGUF file")
    parser.add_argument("--prompts", required=True, help="JSON list of prompt strings")
    parser.add_argument("--max-tokens", type=int, required=True)
    parser.add_argument("--n-ctx", type=int, required=True)
    parser.add_argument("--n-threads", type=int, default=None)
    args = parser.parse_args()

    with open(args.prompts, encoding="utf-8") as f:
        prompts = json.load(f)
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=args.n_ctx, n_threads=args.n_threads,
                          n_threads_batch=args.n_threads, seed=42, verbose=False)
    vocab = llm._model.vocab
    eog = [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]

    def ban_eog(_ids, scores):
        scores[eog] = float("-inf")
        return scores

    processors = llama_cpp.LogitsProcessorList([ban_eog])

    def run(prompt: str) -> int:
        llm.reset()
        out = llm.create_completion(prompt, max_tokens=args.max_tokens, temperature=0.0, top_k=0, top_p=1.0,
                                    min_p=0.0, logits_processor=processors)
        return out["usage"]["completion_tokens"]

    run(prompts[0])  # warmup: one prompt, outside the timing
    t0, c0 = time.perf_counter(), time.process_time()
    tokens = sum(run(p) for p in prompts)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"tokens": tokens, "seconds": seconds, "cpu_s": cpu, "tokens_per_second": tokens / seconds}))


if __name__ == "__main__":
    main()
