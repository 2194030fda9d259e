"""Warmup convergence, window selection, the prefill/decode split, quality flags and the timeseries file: each on
exactly known inputs (GenerationRecords and counter tracks built by hand)."""

from __future__ import annotations

import pytest
from conftest import make_config
from fakes import FakeClock, FakeCounterDevice
from lem_runner.contract.config import WarmupConfig
from lem_runner.energy.base import EnergyReading
from lem_runner.energy.counter import CounterTrack, cumulative_integral
from lem_runner.energy.device import DeviceSample
from lem_runner.energy.sampler import SampleRow
from lem_runner.energy.timeseries import COLUMNS, write_timeseries
from lem_runner.measurement.intervals import intersect, length, subtract, union
from lem_runner.measurement.phases import phase_spans, split_phases
from lem_runner.measurement.quality import counter_vs_integrated, quality_flags
from lem_runner.measurement.warmup import coefficient_of_variation, run_warmup
from lem_runner.measurement.windows import decoding_concurrency, saturated_spans, tokens_in, window_figures
from lem_runner.records import GenerationRecord

# --- warmup ------------------------------------------------------------------------------------------------------


def _latencies(values):
    it = iter(values)
    calls = []

    def run_batch(i):
        calls.append(i)
        return next(it)

    return run_batch, calls


def test_fixed_warmup_runs_its_count():
    run_batch, calls = _latencies([1.0] * 5)
    result = run_warmup(WarmupConfig(n_batches=3), run_batch)
    assert (calls, result.batches, result.mode) == ([0, 1, 2], 3, "fixed")


def test_convergence_stops_once_the_window_cv_is_under_the_threshold():
    # slow first batches (compilation, caches), then steady
    run_batch, calls = _latencies([5.0, 2.0, 1.2, 1.0, 1.01, 0.99, 1.0, 1.0])
    result = run_warmup(WarmupConfig(mode="convergence", window=3, cv_threshold=0.05, max_batches=8), run_batch)
    assert result.batches == 6 and len(calls) == 6
    assert result.final_cv == pytest.approx(coefficient_of_variation([1.0, 1.01, 0.99]))
    assert result.stop_reason.startswith("converged")


def test_convergence_gives_up_at_max_batches_and_says_so():
    run_batch, _ = _latencies([1.0, 2.0] * 5)
    result = run_warmup(WarmupConfig(mode="convergence", window=2, cv_threshold=0.01, max_batches=6), run_batch)
    assert result.batches == 6 and "max_batches 6 reached" in result.stop_reason
    assert result.final_cv == pytest.approx(coefficient_of_variation([1.0, 2.0]))


def test_cv_of_too_few_values_is_undefined():
    assert coefficient_of_variation([1.0]) is None
    assert coefficient_of_variation([2.0, 2.0]) == 0.0


def test_warmup_window_must_fit_its_maximum():
    with pytest.raises(ValueError, match="window must not exceed max_batches"):
        make_config(warmup={"mode": "convergence", "window": 10, "max_batches": 5})


# --- intervals -----------------------------------------------------------------------------------------------------


def test_interval_algebra():
    assert union([(3, 4), (0, 1), (0.5, 2)]) == [(0, 2), (3, 4)]
    assert subtract([(0, 10)], [(2, 3), (5, 6)]) == [(0, 2), (3, 5), (6, 10)]
    assert intersect([(0, 5)], [(4, 8), (-1, 1)]) == [(0, 1), (4, 5)]
    assert length([(0, 2), (3, 4)]) == 3


# --- windows -------------------------------------------------------------------------------------------------------


def _rec(start, first, step, n, n_in=10):
    return GenerationRecord(n_in, n, start, [first + k * step for k in range(n)])


def test_steady_state_excludes_ramp_up_and_the_tail():
    # four requests decode together from t=1 to t=5; two stop at t=3 (the tail), so 4 -> 2 decoding
    records = [_rec(0.0, 1.0, 0.5, 9), _rec(0.0, 1.0, 0.5, 9), _rec(0.0, 1.0, 0.5, 5), _rec(0.0, 1.0, 0.5, 5)]
    assert decoding_concurrency(records) == [(1.0, 3.0, 4), (3.0, 5.0, 2)]
    spans = saturated_spans(records, 0.9)
    assert spans == [(1.0, 3.0)]
    # tokens after t=1 up to t=3: 4 requests x 4 steps each
    assert tokens_in(records, spans) == 16
    assert saturated_spans(records, 0.5) == [(1.0, 5.0)]


def test_window_figures_take_energy_and_subtract_the_baseline():
    fig = window_figures([(1.0, 3.0)], 16, energy=400.0, baseline_w=50.0, origin=0.0, method="m")
    assert (fig.start_offset_s, fig.duration_s, fig.tokens_per_second) == (1.0, 2.0, 8.0)
    assert (fig.energy_j, fig.adjusted_energy_j) == (400.0, 300.0)
    assert (fig.energy_per_token_j, fig.adjusted_energy_per_token_j, fig.mean_power_w) == (25.0, 18.75, 200.0)


def test_window_figures_without_energy_stay_null():
    fig = window_figures([(0.0, 2.0)], 10, energy=None, baseline_w=50.0, origin=0.0, method="m")
    assert (fig.energy_j, fig.adjusted_energy_j, fig.energy_per_token_j, fig.mean_power_w) == (None,) * 4


# --- phases ----------------------------------------------------------------------------------------------------------


def _track(power_at):
    """A counter read every 10 ms from a piecewise power function (exact enough for phase arithmetic)."""
    track = CounterTrack()
    energy, t = 0.0, 0.0
    while t <= 10.0 + 1e-9:
        track.feed(t, energy * 1000)
        energy += power_at(t) * 0.01
        t = round(t + 0.01, 10)
    return track


def test_phase_split_takes_time_from_timestamps_and_energy_from_the_series():
    # two batches: prefill [0, 1] at 400 W, decode [1, 4] at 100 W; idle [4, 5]; prefill [5, 6], decode [6, 9]
    def power(t):
        return 400.0 if (t < 1 or 5 <= t < 6) else 100.0 if (1 <= t < 4 or 6 <= t < 9) else 0.0

    records = [_rec(0.0, 1.0, 0.5, 7), _rec(0.0, 1.0, 0.5, 7), _rec(5.0, 6.0, 0.5, 7)]
    prefill, decode = phase_spans(records)
    assert prefill == [(0.0, 1.0), (5.0, 6.0)] and decode == [(1.0, 4.0), (6.0, 9.0)]
    reading = EnergyReading("fake", "m", 10.0, total_j=1400.0, tracks={"0": _track(power)}, t_start=0.0, t_end=10.0)
    split = split_phases(records, reading, prefill_flops=1e9, decode_flops=3e9)
    assert split.prefill.time_s == 2.0 and split.decode.time_s == 6.0
    assert split.prefill.energy_j == pytest.approx(800.0, rel=0.01)
    assert split.decode.energy_j == pytest.approx(600.0, rel=0.01)
    assert split.prefill.energy_share == pytest.approx(800 / 1400, rel=0.01)
    assert split.prefill.tokens == 30 and split.decode.tokens == 18
    assert split.energy_unavailable_reason is None
    assert split.prefill_spans_s == [(0.0, 1.0), (5.0, 6.0)]


def test_phase_split_without_a_series_says_why():
    records = [_rec(0.0, 1.0, 0.5, 3)]
    totals_only = EnergyReading("zeus", "m", 2.0, total_j=10.0, per_device_j={"0": 10.0})
    split = split_phases(records, totals_only, None, None)
    assert split.prefill.energy_j is None and "window totals only" in split.energy_unavailable_reason
    nothing = EnergyReading("none", "m", 2.0, unavailable_reason="run is on CPU")
    assert split_phases(records, nothing, None, None).energy_unavailable_reason == "run is on CPU"


# --- quality flags ---------------------------------------------------------------------------------------------------


def _reading(**kw):
    track = CounterTrack()
    track.feed(0.0, 0)
    track.feed(10.0, kw.pop("counter_mj", 1_000_000))
    defaults = dict(source="fake", method="m", duration_s=10.0, total_j=1000.0, per_device_j={"0": 1000.0},
                    tracks={"0": track}, t_start=0.0, t_end=10.0, sample_hz=10.0, update_period_s=0.1,
                    samples=[SampleRow(t / 10, "0", None, DeviceSample(power_w=100.0, temperature_c=50.0,
                                                                        clock_event_reasons=0)) for t in range(100)])
    defaults.update(kw)
    pts = [(r.t, r.sample.power_w) for r in defaults["samples"] if r.sample.power_w is not None]
    if len(pts) >= 2:  # as stop_tracking does: sampled power shapes the counter series
        track.shape = cumulative_integral([t for t, _ in pts], [w for _, w in pts])
    return EnergyReading(**defaults)


def _codes(reading, window_s=10.0, rel=0.0):
    return [f.code for f in quality_flags(reading, window_s, rel)]


def test_a_clean_reading_has_no_flags():
    assert _codes(_reading()) == []


@pytest.mark.parametrize(("kw", "window_s", "rel", "code"), [
    ({}, 0.5, 0.0, "short_window"),
    ({"update_period_s": 0.2}, 1.5, 0.0, "short_window"),  # under 10 counter periods
    ({"counter_mj": 0, "total_j": 0.0}, 10.0, None, "counter_no_tick"),
    ({"counter_resets": 1}, 10.0, 0.0, "counter_reset"),
    ({"samples": []}, 10.0, None, "few_samples"),
    ({"samples": [SampleRow(0.1 * i, "0", None, DeviceSample(power_w=100.0, clock_event_reasons=0x4 if i == 5 else 1))
                  for i in range(100)]}, 10.0, 0.0, "throttling"),
    ({"samples": [SampleRow(0.1 * i, "0", None, DeviceSample(power_w=100.0, temperature_c=40.0 + 0.2 * i))
                  for i in range(100)]}, 10.0, 0.0, "temperature_drift"),
    ({"persistence_off": ["0"]}, 10.0, 0.0, "persistence_off"),
    ({"other_processes": {"0": [4242]}}, 10.0, 0.0, "other_process"),
    ({}, 10.0, 0.08, "counter_integrated_disagree"),
])
def test_each_quality_flag(kw, window_s, rel, code):
    codes = _codes(_reading(**kw), window_s, rel)
    assert code in codes, codes


def test_prefill_shorter_than_the_series_resolution_is_flagged():
    reading = _reading()  # 10 Hz sampler, 100 ms counter period
    assert "phase_resolution" in [f.code for f in quality_flags(reading, 10.0, 0.0, [(0.0, 0.03), (5.0, 5.05)])]
    assert "phase_resolution" not in [f.code for f in quality_flags(reading, 10.0, 0.0, [(0.0, 0.5)])]


def test_idle_and_application_clock_reasons_are_not_throttling():
    samples = [SampleRow(0.1 * i, "0", None, DeviceSample(power_w=100.0, clock_event_reasons=0x1 | 0x2))
               for i in range(100)]
    assert "throttling" not in _codes(_reading(samples=samples))


def test_no_energy_no_flags():
    reading = EnergyReading("none", "not measured", 0.1, unavailable_reason="cpu")
    assert quality_flags(reading, 0.1, None) == []


def test_relative_difference_is_against_the_counter():
    assert counter_vs_integrated(100.0, 103.0) == pytest.approx(0.03)
    assert counter_vs_integrated(None, 3.0) is None and counter_vs_integrated(0.0, 3.0) is None


# --- timeseries --------------------------------------------------------------------------------------------------


def test_timeseries_round_trips_through_parquet(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    clock = FakeClock(100.0)
    dev = FakeCounterDevice(clock, lambda t: 50.0 * t, temperature_at=lambda t: 41.5)
    rows = [SampleRow(100.0 + 0.1 * i, "0", dev.energy_mj() if i % 2 == 0 else None, dev.sample()) for i in range(5)]
    path = write_timeseries(rows, tmp_path / "timeseries.parquet", origin=100.0)
    table = pq.read_table(path)
    assert table.column_names == COLUMNS and table.num_rows == 5
    assert table.column("t_s").to_pylist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert table.column("energy_counter_mj").to_pylist()[1] is None
    assert table.column("temperature_c").to_pylist() == [41.5] * 5
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temp file left behind
