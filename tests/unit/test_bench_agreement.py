"""bench/serving_agreement.py's open-loop row: one schedule, drawn once by lem's generator, reaches both clients
unchanged — lem through its own trace path (read_trace → plan_requests), vLLM's client from the same plan."""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def agreement():
    spec = importlib.util.spec_from_file_location("bench_agreement", ROOT / "bench" / "serving_agreement.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_agreement"] = module
    spec.loader.exec_module(module)
    return module


def test_the_trace_replays_lems_own_poisson_draw_with_exact_lengths(tmp_path, agreement, tiny_model_path):
    from lem_runner.serving.schedule import arrival_offsets

    args = argparse.Namespace(open_rate=4.0, open_n=64, open_input_len=64, open_output_len=32, seed=3)
    trace = agreement.write_trace(args, tmp_path / "trace.jsonl")
    plan = agreement.trace_plan(trace, str(tiny_model_path), 500, args.seed)
    truth = arrival_offsets("poisson", 4.0, 1.0, 64, random.Random(3))  # the draw itself, independently
    assert [p.arrival_s for p in plan] == pytest.approx(truth, abs=1e-6)  # ms with 3 decimals in the file
    assert all(isinstance(p.prompt, list) and len(p.prompt) == 64 and p.max_tokens == 32 for p in plan)
    assert all(10 <= t < 490 for p in plan for t in p.prompt)  # token ids inside the vocabulary
