"""What the load generator sends and when: seeded arrival offsets and per-request prompts and lengths.

Open-loop processes draw inter-arrival gaps: constant 1/rate; Poisson exponential with mean 1/rate; gamma with shape
``burstiness`` and scale 1/(rate x burstiness) (mean 1/rate, CV 1/sqrt(burstiness), vLLM's convention). The first
request goes at offset 0. The same seed gives the same schedule and the same lengths.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from lem_runner.contract.config import ExperimentConfig
from lem_runner.contract.serving import LengthDistribution
from lem_runner.contract.workload import WorkloadItem
from lem_runner.serving.planned import PlannedRequest
from lem_runner.serving.prefix import with_shared_prefix

#: a closed loop or an open loop bounded by duration_s plans at most this many requests
MAX_PLANNED = 100_000


def arrival_offsets(arrival: str, rate: float, burstiness: float, n: int, rng: random.Random,
                    duration_s: float | None = None) -> list[float]:
    """``n`` offsets (or every offset before ``duration_s``, at most MAX_PLANNED) of an open-loop process."""
    offsets: list[float] = []
    t = 0.0
    limit = n if duration_s is None else MAX_PLANNED
    while len(offsets) < limit:
        if duration_s is not None and t >= duration_s:
            break
        offsets.append(t)
        if arrival == "constant":
            gap = 1.0 / rate
        elif arrival == "poisson":
            gap = rng.expovariate(rate)
        else:
            gap = rng.gammavariate(burstiness, 1.0 / (rate * burstiness))
        t += gap
    return offsets


def draw_length(dist: LengthDistribution, rng: random.Random) -> int:
    if dist.dist == "fixed":
        return int(dist.value)  # type: ignore[arg-type]
    if dist.dist == "uniform":
        return rng.randint(dist.min, dist.max)
    if dist.dist == "normal":
        x = rng.gauss(dist.mean, dist.std)  # type: ignore[arg-type]
    else:
        x = rng.lognormvariate(math.log(dist.mean), dist.sigma)  # type: ignore[arg-type]
    return int(min(dist.max, max(dist.min, round(x))))


def vocab_size(model_path: str) -> int | None:
    """The model's vocabulary size from its config.json (token-id prompts stay inside it)."""
    try:
        cfg = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    v = cfg.get("vocab_size") or cfg.get("text_config", {}).get("vocab_size")
    return int(v) if isinstance(v, int) and v > 32 else None


def plan_requests(cfg: ExperimentConfig, prompts: list[str], workload: list[WorkloadItem] | None,
                  vocab: int | None) -> list[PlannedRequest]:
    """Every request of the run, in order. Exact input lengths are sent as token ids drawn from the vocabulary
    (ids 10..vocab-10, so no special token is likely); without a vocabulary, as that many common words."""
    s = cfg.serving
    rng = random.Random(cfg.seed if s.seed is None else s.seed)
    arrival_rng = random.Random(rng.random())
    length_rng = random.Random(rng.random())
    trace = workload if s.arrival == "trace" else None
    dataset = workload if s.arrival != "trace" else None
    if trace is not None:
        n = min(s.n_requests or len(trace), len(trace))
        offsets: list[float | None] = [i.arrival_s for i in trace[:n]]
        if s.duration_s is not None:
            offsets = [o for o in offsets if o is not None and o < s.duration_s]
    elif s.arrival == "concurrency":
        n = s.n_requests or (cfg.n_prompts if s.duration_s is None else MAX_PLANNED)
        offsets = [None] * n
    else:
        n = s.n_requests or cfg.n_prompts
        offsets = list(arrival_offsets(s.arrival, s.rate, s.burstiness, n, arrival_rng, s.duration_s))
    planned = []
    for i, offset in enumerate(offsets):
        item = trace[i] if trace is not None else dataset[i % len(dataset)] if dataset else None
        n_in = item.input_tokens if item and item.input_tokens else (
            draw_length(s.input_tokens, length_rng) if s.input_tokens else None)
        n_out = item.output_tokens if item and item.output_tokens else (
            draw_length(s.output_tokens, length_rng) if s.output_tokens else cfg.max_output_tokens)
        if item is not None and item.prompt is not None:
            prompt: str | list[int] = item.prompt
        elif n_in is not None:
            prompt = ([length_rng.randrange(10, vocab - 10) for _ in range(n_in)] if vocab
                      else " ".join(["time"] * n_in))
        else:
            prompt = prompts[i % len(prompts)]
        planned.append(PlannedRequest(i, offset, prompt, n_out))
    return with_shared_prefix(planned, s.shared_prefix, cfg.seed if s.seed is None else s.seed, vocab)
