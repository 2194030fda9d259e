"""The commented starter configs ``lem config init`` writes: the fields a first measurement needs, each with a line
saying what it does, everything else left at its default (docs/config-reference.md lists them all). Tests load both
through the real loader, so a starter file always validates; the serving starter's commented examples (multi-turn,
shared prefix, capacity) validate too once uncommented as their header line says (tests/unit/test_starter.py)."""

from __future__ import annotations

from lem_runner.contract import backend_names
from lem_runner.contract.config import EMBEDDED_DEFAULT_MODEL

#: every backend this checkout has (its folders), so a new backend's folder is listed without touching this file
_BACKENDS = " | ".join(backend_names())

EXPERIMENT = f"""\
# lem experiment config: `lem run THIS_FILE`. Every field: docs/config-reference.md; check it: `lem config validate`.
# Editor completion: `lem config schema -o schemas`, then point your YAML editor at schemas/lem-config.schema.json.
name: my-experiment              # result folder prefix: results/<name>-<date>-<time>/
model: "{EMBEDDED_DEFAULT_MODEL}"  # hub id, local folder, or the embedded default
backend: pytorch                 # {_BACKENDS} (one not installed here: run with --isolated)
dtype: auto                      # auto keeps the checkpoint's dtype; or float32 | float16 | bfloat16
device: auto                     # auto uses CUDA when a GPU is visible; cpu runs have no energy figure

prompts:
  source: builtin                # builtin | jsonl (with path:) | synthetic (with input_tokens:)
n_prompts: 16                    # prompts measured inside the window
max_input_tokens: 512            # longer prompts are truncated
max_output_tokens: 64            # tokens generated per prompt (at most)
force_output_length: false       # true: exactly max_output_tokens, ignoring end-of-sequence

warmup:
  mode: fixed                    # fixed (n_batches) | convergence (until latency CV < cv_threshold)
  n_batches: 1                   # batches before the window; never counted

energy:
  sampler: auto                  # auto: NVML counter on NVIDIA GPUs, RAPL on CPU where readable
  sample_hz: 10                  # power sampling for the cross-check and timeseries.parquet
  baseline:
    mode: cached                 # idle power to subtract: fresh | cached (reused for ttl_s) | "off"

window:
  mode: total                    # total | steady_state | windowed (with duration_s:)

pytorch:
  batch_size: 8                  # prompts per generate() call
"""

STUDY = f"""\
# lem study: every combination of the sweep axes, each run n_cycles times: `lem run THIS_FILE`.
# Fields: docs/config-reference.md (study section); results: `lem results list results/`.
name: my-study
base:                            # experiment fields shared by every point
  model: "{EMBEDDED_DEFAULT_MODEL}"
  backend: pytorch
  n_prompts: 16
  max_output_tokens: 64
  force_output_length: true      # same token count at every point
sweep:                           # dotted path -> values; the cartesian product is run
  pytorch.batch_size: [1, 8]
n_cycles: 3                      # repeats per point: mean, std and 95 % CI per metric
order: interleave                # sequential | interleave | shuffle | latin_square
gap_seconds: 0                   # pause between runs (thermal settling)
"""

SERVING = f"""\
# lem serving experiment: the backend's OpenAI-compatible server under load. `lem run THIS_FILE`.
# Every field: docs/config-reference.md (serving section); definitions: docs/method.md, "Serving".
name: my-serving
model: "{EMBEDDED_DEFAULT_MODEL}"  # hub id, local folder, or the embedded default
backend: pytorch                 # {_BACKENDS}: each serves through its own OpenAI-compatible server
scenario: serving
max_output_tokens: 32            # tokens per request (serving.output_tokens draws them instead)
force_output_length: true        # every request generates exactly its length

serving:
  arrival: poisson               # constant | poisson | gamma (+ burstiness) | concurrency (+ concurrency) | trace
  rate: 2                        # requests per second (sweep it in a study: serving.rate: [1, 2, 4])
  n_requests: 32                 # or duration_s: 60
  input_tokens: {{dist: uniform, min: 16, max: 128}}   # fixed (value) | uniform | normal | lognormal (mean, sigma)
  request_timeout_s: 120         # a request still open after this counts as a timeout
  slo: {{ttft_ms: 1000, tpot_ms: 100}}                 # milliseconds; goodput and J per good output token
  warmup_requests: 2             # sent one by one before the window; never counted
  # endpoint: http://127.0.0.1:8000/v1                # a server you already run: lem starts none

  # Multi-turn: uncomment, and delete n_requests and input_tokens above (rate is then new conversations per second).
  # Each turn's prompt is the whole history so far (chat-templated where the model has a template) plus a new
  # user message, sent when the previous answer has arrived plus a think time.
  # conversations:
  #   n_conversations: 8
  #   turns: 4                                       # user turns per conversation (or a distribution)
  #   user_tokens: {{dist: uniform, min: 16, max: 64}}   # words in each new user message
  #   think_time: {{dist: exponential, mean: 2}}       # seconds; fixed (value) | uniform | lognormal

  # Shared prefix: uncomment (a system prompt of `tokens` tokens ahead of every request, in `groups` variants,
  # so the engine's prefix cache is exercised; sweep vllm.enable_prefix_caching: [true, false] beside it).
  # shared_prefix: {{tokens: 256, groups: 4}}

  # Capacity: uncomment, and delete rate above: instead of one rate, the highest rate at which >= good_share of
  # requests meet slo (bracket, then bisect; each probe is this load at one rate; with arrival: concurrency,
  # concurrency_min/concurrency_max instead).
  # capacity: {{good_share: 0.9, rate_min: 1, rate_max: 16}}

energy:
  sampler: auto                  # NVML on GPUs; on CPU RAPL where readable, else energy is null with the reason
"""
