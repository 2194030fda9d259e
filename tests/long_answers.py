"""Long answers for real (serving.output_tokens long-tailed, force_output_length): the workload both the PyTorch path
(tests/integration/test_serving_long_answers.py) and the vLLM image (tests/docker/test_serving_vllm_long.py) run, and
its truth computed apart from lem — the output lengths the documented draw gives (docs/method.md, Requests: the
serving seed seeds a generator whose first two draws seed the arrival and length generators; lognormal lengths are
``round(lognormvariate(ln(mean), sigma))`` clipped to min..max) — and the checks of a run against it."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

#: a few requests, one of them long: these draw 1423, 291, 157 and 130 tokens (drawn_lengths)
SEED, N, MEAN, SIGMA, LOW, HIGH = 9, 4, 250, 1.2, 16, 1500
#: the tiny model's positions raised so the longest answer fits (RoPE: no weight depends on it)
POSITIONS = 2048
SERVING = (f"  arrival: concurrency\n  concurrency: {N}\n  n_requests: {N}\n  warmup_requests: 0\n  seed: {SEED}\n"
           f"  output_tokens: {{dist: lognormal, mean: {MEAN}, sigma: {SIGMA}, min: {LOW}, max: {HIGH}}}\n")


def drawn_lengths() -> list[int]:
    top = random.Random(SEED)
    random.Random(top.random())  # the arrival generator's seed (unused in a closed loop, drawn all the same)
    lengths = random.Random(top.random())
    return [min(HIGH, max(LOW, round(lengths.lognormvariate(math.log(MEAN), SIGMA)))) for _ in range(N)]


def long_context_copy(model: Path, target: Path) -> Path:
    """The tiny model with max_position_embeddings POSITIONS (a copy; the weights are the same)."""
    shutil.copytree(model, target)
    cfg = json.loads((target / "config.json").read_text())
    cfg["max_position_embeddings"] = POSITIONS
    (target / "config.json").write_text(json.dumps(cfg))
    return target


def check_long_answers(result_json: Path, table: list[dict]) -> None:
    """Every answer as long as its draw, in the result and in requests.parquet; energy per answer and J/token are
    there, null with the reason (no energy source on CPU), never 0."""
    from lem_runner.contract import ExperimentResult

    raw = json.loads(result_json.read_text())
    r = ExperimentResult.model_validate(raw)
    s = r.serving
    want = drawn_lengths()
    assert (s.n_requests, s.n_ok, s.n_timeouts) == (N, N, 0), s.error_examples
    assert [row["output_tokens"] for row in sorted(table, key=lambda x: x["request"])] == want
    assert all(row["status"] == "ok" and sum(row["chunk_tokens"]) == row["output_tokens"] for row in table)
    assert r.whole_run.output_tokens == sum(want) and max(want) > 1000
    # the figures are in the result, present as fields: null with the reason here (no energy on this host)
    for key in ("energy_per_request", "energy_per_completed_request_j", "energy_unavailable_reason"):
        assert key in raw["serving"]
    for key in ("energy_per_token_j", "total_energy_j"):
        assert key in raw
    if r.total_energy_j is None:
        assert s.energy_per_request is None and s.energy_per_completed_request_j is None
        assert r.energy_per_token_j is None and s.energy_unavailable_reason
    else:  # a host with an energy source: per answer and per token both measured
        assert s.energy_per_request.mean_j > 0 and s.energy_per_completed_request_j > 0 and r.energy_per_token_j > 0
    assert "request_timeouts" not in r.quality_flags
    # the longest answer streamed longest: its E2E is the largest
    longest = max(table, key=lambda x: x["output_tokens"])
    assert all(longest["end_s"] - longest["submit_s"] >= row["end_s"] - row["submit_s"] for row in table)
