"""A plain transformers loop, the reference for lem's PyTorch figures: ``generate`` over the same batches, same
settings, no streamer, no lem, in a process of its own (as lem's runner is), so neither side inherits the other's
warm state. Prints one JSON line: tokens, wall seconds and process CPU seconds of the timed loop.

Torch keeps its defaults (threads = cores), as lem's runner does. The prompts come from a JSON file the benchmark
writes, so this process imports nothing of lem's.
"""

import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompts", required=True, help="JSON list of prompt strings")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--max-tokens", type=int, required=True)
    args = parser.parse_args()

    with open(args.prompts, encoding="utf-8") as f:
        prompts = json.load(f)
    tok = AutoTokenizer.from_pretrained(args.model)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype="float32").eval()
    batches = [prompts[i : i + args.batch_size] for i in range(0, len(prompts), args.batch_size)]

    def run(batch: list[str]) -> int:
        enc = tok(batch, return_tensors="pt", padding=True, truncation=True, max_length=512)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=args.max_tokens, min_new_tokens=args.max_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id)
        return out.shape[0] * (out.shape[1] - enc["input_ids"].shape[1])

    run(batches[0])  # warmup: one batch, outside the timing, like lem's default
    t0, c0 = time.perf_counter(), time.process_time()
    tokens = sum(run(b) for b in batches)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"tokens": tokens, "seconds": seconds, "cpu_s": cpu, "tokens_per_second": tokens / seconds,
                      "torch_threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()}))


if __name__ == "__main__":
    main()
