"""Measurement edges `make mutate` found unguarded (docs/mutation.md), each against numbers worked out by hand: a
window's FLOPs counted per output token (the first carries the prefill), and the coefficient of variation that ends
convergence warmup."""

from __future__ import annotations

import pytest
from lem_runner.measurement.warmup import coefficient_of_variation
from lem_runner.measurement.windows import window_flops
from lem_runner.records import GenerationRecord, ModelShape, ParameterCounts

COUNTS = ParameterCounts(total=1100, input_embedding=100, output_projection=100, tied_embeddings=False)
SHAPE = ModelShape(n_layers=2, attention_dim=8)
# prompt 3, output 3 (tokens at 1.0, 2.0, 3.0 s): body 900, head 100 (test_measurement.py works the same request)
PREFILL = 2 * 900 * 3 + 2 * 100 + 2 * 2 * 8 * 3 * 4  # the first token's forward pass over the prompt
STEP_4, STEP_5 = 2 * 1000 + 4 * 2 * 8 * 4, 2 * 1000 + 4 * 2 * 8 * 5  # decode at positions 4 and 5
RECORD = GenerationRecord(input_tokens=3, output_tokens=3, start=0.5, token_times=[1.0, 2.0, 3.0])


@pytest.mark.parametrize("spans, flops", [
    ([(0.0, 4.0)], PREFILL + STEP_4 + STEP_5),
    ([(0.0, 1.5)], PREFILL),  # a span holding the first token holds the prefill
    ([(1.5, 2.5)], STEP_4),
    ([(1.5, 2.5), (2.5, 3.5)], STEP_4 + STEP_5),
    ([(1.0, 2.0)], STEP_4),  # spans are (a, b]: a token at a belongs to the span before
    ([(3.5, 9.0)], 0.0),
])
def test_window_flops_count_each_output_tokens_forward_pass(spans, flops):
    assert window_flops([RECORD], spans, COUNTS, SHAPE) == flops


def test_window_flops_without_a_shape_leave_attention_out():
    assert window_flops([RECORD], [(0.0, 4.0)], COUNTS, None) == 2 * 900 * 3 + 2 * 100 + 2 * (2 * 1000)


@pytest.mark.parametrize("values, cv", [([1.0, 2.0, 3.0], 0.5), ([4.0, 4.0], 0.0), ([10.0, 14.0], 2 ** 0.5 * 2 / 12)])
def test_coefficient_of_variation_is_sample_stdev_over_mean(values, cv):
    assert coefficient_of_variation(values) == pytest.approx(cv)


@pytest.mark.parametrize("values", [[5.0], [], [0.0, 0.0], [-1.0, 1.0]])
def test_no_coefficient_of_variation_without_two_values_or_a_positive_mean(values):
    assert coefficient_of_variation(values) is None


def test_flag_messages_state_their_durations_in_milliseconds():
    """Seconds in the reading, milliseconds in the message: a 30 ms prefill against the series' resolution (100 power
    samples over the 10 s window: 10 s / 99 intervals = 101 ms), and a 0.5 s window against a 100 ms counter
    period."""
    from lem_runner.measurement.quality import quality_flags
    from test_measurement_method import _reading

    (flag,) = [f for f in quality_flags(_reading(), 10.0, 0.0, [(0.0, 0.03)]) if f.code == "phase_resolution"]
    assert flag.message.startswith("prefill spans average 30 ms, under the 101 ms the energy series resolves")
    short = _reading(duration_s=0.5, t_end=0.5)
    (flag,) = [f for f in quality_flags(short, 0.5, 0.0) if f.code == "short_window"]
    assert flag.message.startswith("measurement window 0.50 s is short; the counter updates every 100 ms:")
