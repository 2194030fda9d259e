"""One TTFT definition for every backend, and a prefill/decode split that does not count queueing as prefill.

The scenario of issue 13: 32 requests, 8 slots, 20 ms prefill, 50 output tokens at 10 ms. Worked out by hand: the
engine runs 4 waves of 8, each 20 ms of prefill then 49 decode steps (490 ms), so the run lasts 4 x 510 = 2040 ms and
prefill is 4 x 20 = 80 ms of it (3.9 %). Every request is submitted at 0, so wave w's first tokens arrive at
510 w + 20 ms: TTFT p50 over 32 requests is the mean of waves 1 and 2, (530 + 1040) / 2 = 785 ms, and queue time p50
(765 ms) is the same less the 20 ms prefill. A static-batching engine (PyTorch, batches of 8) with the same speeds has
exactly the same timeline, so it must report the same figures; its per-batch TTFT is 20 ms.
"""

from __future__ import annotations

import pytest
from conftest import make_config, make_environment
from fakes import FakeEnergySource, FakeInferenceBackend
from lem_runner.assemble import QUEUE_ESTIMATED, QUEUE_EXACT
from lem_runner.contract.protocol import RunRequest
from lem_runner.energy.base import EnergyReading
from lem_runner.energy.counter import CounterTrack
from lem_runner.measure import run_measurement
from lem_runner.measurement.phases import split_phases

N, SLOTS, PREFILL_S, TOKENS, STEP_S = 32, 8, 0.020, 50, 0.010
RUN_S = 4 * (PREFILL_S + (TOKENS - 1) * STEP_S)  # 2.04 s
TRUE_PREFILL_S = 4 * PREFILL_S  # 0.08 s


def _engine(kind: str) -> FakeInferenceBackend:
    if kind == "static batches (PyTorch)":
        return FakeInferenceBackend(batch_size=SLOTS, output_tokens=TOKENS, step_s=STEP_S, ttft_s=PREFILL_S,
                                    reports_scheduled=True)
    return FakeInferenceBackend(batch_size=None, slots=SLOTS, output_tokens=TOKENS, step_s=STEP_S, ttft_s=PREFILL_S,
                                reports_scheduled=kind == "continuous batching, engine scheduling times")


KINDS = ["static batches (PyTorch)", "continuous batching, engine scheduling times",
         "continuous batching, steps only"]


def _measure(backend):
    config = make_config(n_prompts=N, warmup={"n_batches": 0})
    request = RunRequest(experiment_id="exp-cb", config=config, model_path="/models/fake")
    return run_measurement(request, backend, lambda _l: FakeEnergySource(clock=backend.clock),
                           lambda _l: make_environment(), lambda _e: None, clock=backend.clock)


@pytest.mark.parametrize("kind", KINDS)
def test_prefill_time_is_when_requests_are_prefilled_not_while_they_queue(kind):
    result = _measure(_engine(kind))
    assert result.inference_time_s == pytest.approx(RUN_S)
    prefill, decode = result.phases.prefill.time_s, result.phases.decode.time_s
    assert prefill == pytest.approx(TRUE_PREFILL_S)  # the old union of [start, first token] gave 1.55 s (76 %)
    assert prefill / (prefill + decode) == pytest.approx(0.039, abs=0.001)
    spans = [x for span in result.phases.prefill_spans_s for x in span]
    assert spans == pytest.approx([x for w in range(4) for x in (0.51 * w, 0.51 * w + 0.02)])


@pytest.mark.parametrize("kind", KINDS)
def test_ttft_runs_from_submission_with_queueing_the_same_for_every_backend(kind):
    result = _measure(_engine(kind))
    ttft = result.ttft
    assert ttft.n == N
    assert (ttft.min_ms, ttft.p50_ms, ttft.max_ms) == pytest.approx((20.0, 785.0, 1550.0))
    assert result.queue_time.p50_ms == pytest.approx(765.0) and result.queue_time.min_ms == pytest.approx(0.0)
    assert result.queue_time_method == (QUEUE_ESTIMATED if kind.endswith("steps only") else QUEUE_EXACT)
    # the per-call figure: PyTorch's own batch start hides the queueing; one call for the whole set does not
    expected_batch_p50 = 20.0 if kind.startswith("static") else 785.0
    assert result.batch_ttft.p50_ms == pytest.approx(expected_batch_p50)


def test_prefill_energy_share_under_continuous_batching_is_the_prefill_steps_share():
    """Prefill at 600 W and decode at 300 W: the prefill steps hold 80 ms x 600 W = 48 J of 48 + 1.96 s x 300 W."""
    backend = _engine("continuous batching, steps only")
    backend.load()
    records = backend.generate([f"p{i}" for i in range(N)])
    prefill = [(0.51 * w, 0.51 * w + 0.02) for w in range(4)]

    def power(t):
        return 600.0 if any(a <= t < b for a, b in prefill) else 300.0

    track, energy, t = CounterTrack(), 0.0, 0.0
    while t <= RUN_S + 1e-9:  # a counter read every 1 ms
        track.feed(t, energy * 1000)
        energy += power(t + 0.0005) * 0.001
        t = round(t + 0.001, 10)
    reading = EnergyReading("fake", "m", RUN_S, total_j=energy, tracks={"0": track}, t_start=0.0, t_end=RUN_S)
    split = split_phases(records, reading, None, None)
    assert split.prefill.energy_j == pytest.approx(48.0, rel=0.02)
    assert split.prefill.energy_share == pytest.approx(48.0 / (48.0 + 1.96 * 300.0), rel=0.02)  # 7.5 %, not 85 %
