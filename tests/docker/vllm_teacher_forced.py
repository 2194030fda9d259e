"""Run inside the vLLM CPU image by test_vllm_quality.py: lem's VLLMBackend on the tiny model (float32) answers
loglikelihood and next_token_logprobs for fixed inputs, and vLLM generates greedily for fixed prompts; all of it
printed as one JSON line for the test to check against transformers on the host.

argv: model folder, then a JSON object {"pairs": [[context, continuation], ...], "forced": [[prompt_ids,
continuation_ids], ...], "top_k": [k, ...], "prompts": [[ids], ...], "new_tokens": n}."""

from __future__ import annotations

import json
import sys

from lem_runner.backends.vllm.backend import VLLMBackend
from lem_runner.backends.vllm.logprobs import logprob_cap
from lem_runner.contract import ExperimentConfig


def main() -> None:
    model, spec = sys.argv[1], json.loads(sys.argv[2])
    config = ExperimentConfig(model=model, backend="vllm", device="cpu", dtype="float32",
                              max_input_tokens=128, max_output_tokens=16, vllm={"max_model_len": 256})
    backend = VLLMBackend(config, model)
    backend.load()
    try:
        from vllm import SamplingParams, TokensPrompt

        out = {
            "cap": logprob_cap(backend._llm),
            "loglikelihood": backend.loglikelihood([tuple(p) for p in spec["pairs"]]),
            "forced": {str(k): [[{str(t): lp for t, lp in d.items()}
                                 for d in backend.next_token_logprobs(p, c, k)] for p, c in spec["forced"]]
                       for k in spec["top_k"]},
        }
        try:
            backend.next_token_logprobs(spec["forced"][0][0], spec["forced"][0][1], out["cap"] + 1)
            out["over_cap"] = None
        except ValueError as exc:
            out["over_cap"] = str(exc)
        greedy = SamplingParams(max_tokens=spec["new_tokens"], temperature=0.0, ignore_eos=True, detokenize=False)
        done = backend._llm.generate([TokensPrompt(prompt_token_ids=p) for p in spec["prompts"]], greedy,
                                     use_tqdm=False)
        out["greedy"] = [list(d.outputs[0].token_ids) for d in done]
    finally:
        backend.close()
    print("LEM-RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
