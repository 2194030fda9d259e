"""A plain vLLM script, the reference for lem's vLLM figures: LLM.generate over the same prompts, same settings.

Runs inside the vLLM runner image (which has vLLM); prints one JSON line.
"""

import argparse
import json
import time

from lem_runner.contract.config import PromptConfig
from lem_runner.prompts import load_prompts
from vllm import LLM, SamplingParams


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--n-prompts", type=int, required=True)
    parser.add_argument("--max-tokens", type=int, required=True)
    args = parser.parse_args()

    prompts = load_prompts(PromptConfig(), args.n_prompts, seed=42)
    llm = LLM(model=args.model, dtype="float32", max_model_len=1024, enforce_eager=True, seed=42,
              enable_prefix_caching=False)
    params = SamplingParams(max_tokens=args.max_tokens, min_tokens=args.max_tokens, ignore_eos=True, temperature=0)
    llm.generate(prompts, params, use_tqdm=False)  # warmup, as lem's runner does
    t0 = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    print(json.dumps({"tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds}))


if __name__ == "__main__":  # vLLM spawns its engine core, which re-imports this module
    main()
