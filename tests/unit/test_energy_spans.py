"""Issue 13, items 4, 5, 6, 9, 10, 11: which span each energy figure covers, and how finely it can be resolved.

Every scenario has a known power and timing, and each test checks the figure against that truth computed here, not
against what the code returns."""

from __future__ import annotations

import json
import math

import pytest
from conftest import make_config, make_environment, make_result, write_yaml
from fakes import FakeClock, FakeCounterDevice, FakeEnergySource, FakeInferenceBackend
from lem_runner.contract import ExperimentResult, RunRequest
from lem_runner.energy.base import EnergyReading
from lem_runner.energy.counter import CounterTrack
from lem_runner.energy.device import DeviceSample
from lem_runner.energy.sampler import SampleRow
from lem_runner.energy.tracker import CounterEnergySource
from lem_runner.measure import run_measurement
from lem_runner.measurement.quality import quality_flags
from llenergymeasure.config.loader import load_config
from llenergymeasure.errors import ConfigError
from llenergymeasure.results.discover import load_experiment
from pydantic import ValidationError


def _measure(config, backend, energy):
    request = RunRequest(experiment_id="exp-1", config=config, model_path="/m")
    return run_measurement(request, backend, lambda _l: energy, lambda _l: make_environment(), lambda _e: None,
                           clock=backend.clock)


def _tracker(clock, devices, hz):
    return CounterEnergySource(devices, name="fake_counter", method="fake counter", sample_hz=hz, clock=clock,
                                sleep=clock.sleep, threaded=False)


# --- item 9: every counter read placed the same way ------------------------------------------------------------------


def test_every_counter_read_is_placed_alike_so_the_window_edges_get_their_energy():
    # 200 W, a counter updating every 100 ms, read every 100 ms from t = 10.03 (between updates) to 11.03
    clock = FakeClock(10.03)
    dev = FakeCounterDevice(clock, lambda t: 200.0 * t, update_period_s=0.1)
    track = CounterTrack(update_period_s=0.1)
    for k in range(11):
        clock.now = 10.03 + 0.1 * k
        track.feed(clock.now, dev.energy_mj())
    # the window's first 0.3 s: 60 J at 200 W (placing the first read at its own instant gave 70 J, +17 %)
    assert track.between(10.03, 10.33) == pytest.approx(60.0, rel=0.02)
    # the last half-period is not lost: 10 J in the final 50 ms before the closing read
    assert track.between(10.98, 11.03) == pytest.approx(10.0, rel=0.02)
    assert track.between(10.03, 11.03) == pytest.approx(200.0, rel=0.02)


# --- item 11: RAPL baseline spread -------------------------------------------------------------------------------------


def _rapl_baseline(*watts, read_cost_s=0.0):
    clock = FakeClock(100.0)
    devices = [FakeCounterDevice(clock, lambda t, w=w: w * t, dev_id=f"cpu:package-{i}", uuid=None,
                                 update_period_s=0.001, reports_power=False, read_cost_s=read_cost_s)
               for i, w in enumerate(watts)]
    tracker = CounterEnergySource(devices, name="rapl", method="fake rapl", sample_hz=10.0, clock=clock,
                                   sleep=clock.sleep)
    tracker.probe()
    return tracker.idle_baseline(5.0)


def test_rapl_baseline_spread_sums_packages_per_instant():
    baseline = _rapl_baseline(40.0, 60.0)
    assert baseline.power_w == pytest.approx(100.0, rel=0.01)
    # two constant packages: their sum is constant, so the spread is ~0 (concatenating them gave ~10 W)
    assert baseline.power_std_w is not None and baseline.power_std_w < 0.5


def test_rapl_baseline_spread_has_no_spikes_from_read_pairs_straddling_an_update():
    # the loop's last sampler read and the closing read land 0.5 ms apart, straddling a 1 ms counter update: one
    # update's joules over that sliver read as 200 W
    baseline = _rapl_baseline(100.0)
    assert baseline.power_w == pytest.approx(100.0, rel=0.01)
    assert baseline.power_std_w is not None and baseline.power_std_w < 1.0
    # reads that take time (0.4 ms each) straddle updates elsewhere; still no spike
    baseline = _rapl_baseline(100.0, read_cost_s=0.0004)
    assert baseline.power_w == pytest.approx(100.0, rel=0.01)
    assert baseline.power_std_w is not None and baseline.power_std_w < 1.0


# --- item 10: adjusted energy keeps its sign -------------------------------------------------------------------------


def test_adjusted_energy_below_the_baseline_stays_signed_and_is_flagged():
    # raw 330 J over a 3 s window (110 W) against a 126 W baseline (taken hotter): adjusted 330 - 378 = -48 J
    backend = FakeInferenceBackend(batch_size=2, output_tokens=12, step_s=0.25)
    result = _measure(make_config(n_prompts=2), backend, FakeEnergySource(joules=330.0, baseline_w=126.0))
    assert result.inference_time_s == pytest.approx(3.0)
    assert result.adjusted_energy_j == pytest.approx(-48.0)
    assert result.adjusted_energy_per_token_j == pytest.approx(-48.0 / 24)
    assert "baseline_exceeds_raw" in result.quality_flags
    assert any("exceeds the raw energy" in w for w in result.warnings)


# --- item 4: sub-span energy needs a series that resolves it -----------------------------------------------------------


def test_sub_span_energy_without_interior_reads_is_null_with_the_reason():
    # sample_hz 0: the counter is read at the window's two bounds only, so a phase or the steady state would get
    # a time share of the total; they are null and say why, while the total stays measured
    backend = FakeInferenceBackend(batch_size=2, output_tokens=5, step_s=0.25, ttft_s=0.5)
    dev = FakeCounterDevice(backend.clock, lambda t: 300.0 * t)
    config = make_config(n_prompts=4, warmup={"n_batches": 0}, energy={"sample_hz": 0, "baseline": {"mode": "off"}})
    result = _measure(config, backend, _tracker(backend.clock, [dev], 0.0))
    assert result.total_energy_j == pytest.approx(300.0 * result.inference_time_s)
    assert result.phases.prefill.energy_j is None and result.phases.decode.energy_j is None
    assert "boundary reads" in result.phases.energy_unavailable_reason
    steady = result.windows["steady_state"]
    assert steady.energy_j is None and "boundary reads" in steady.energy_unavailable_reason


def test_config_refuses_a_sub_span_window_without_a_sampler(tmp_path):
    with pytest.raises(ValidationError, match=r"energy\.sample_hz: 0"):
        make_config(energy={"sample_hz": 0}, window={"mode": "steady_state"})
    path = write_yaml(tmp_path / "exp.yaml", "energy:\n  sample_hz: 0\nwindow:\n  mode: windowed\n  duration_s: 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.exit_code == 2 and "energy.sample_hz: 0" in str(info.value)
    make_config(energy={"sample_hz": 0})  # the total window needs only the two boundary reads


def _rapl_like_reading(read_every_s):
    """10 s at 100 W on a counter read every ``read_every_s`` with no power readings (a RAPL package)."""
    track = CounterTrack(update_period_s=0.001)
    n = round(10.0 / read_every_s)
    for k in range(n + 1):
        track.feed(k * read_every_s, 100.0 * k * read_every_s * 1000)
    samples = [SampleRow(0.1 * i, "cpu:package-0", None, DeviceSample()) for i in range(100)]
    return EnergyReading("rapl", "m", 10.0, total_j=1000.0, per_device_j={"cpu:package-0": 1000.0},
                         tracks={"cpu:package-0": track}, t_start=0.0, t_end=10.0, sample_hz=10.0,
                         update_period_s=0.001, samples=samples)


def test_phase_resolution_is_flagged_against_the_counter_read_interval_without_power_readings():
    # 200 ms prefills against a counter read every 500 ms: not resolved, though the sampler ticks at 10 Hz
    reading = _rapl_like_reading(0.5)
    flags = quality_flags(reading, 10.0, None, [(1.0, 1.2), (4.0, 4.2)])
    assert "phase_resolution" in [f.code for f in flags]
    assert reading.resolution_s() == pytest.approx(0.5)
    fine = quality_flags(_rapl_like_reading(0.05), 10.0, None, [(1.0, 1.2), (4.0, 4.2)], [(1.2, 4.0), (4.2, 8.0)])
    assert "phase_resolution" not in [f.code for f in fine]


# --- item 5: totals-only sources -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["zeus", "codecarbon"])
@pytest.mark.parametrize("window", [{"mode": "steady_state"}, {"mode": "windowed", "duration_s": 5.0}])
def test_totals_only_sources_refuse_a_non_total_window(tmp_path, sampler, window):
    with pytest.raises(ValidationError, match=f"energy.sampler '{sampler}' reports whole-window totals only"):
        make_config(device="cuda", energy={"sampler": sampler}, window=window)
    text = f"device: cuda\nenergy:\n  sampler: {sampler}\nwindow:\n" + "".join(f"  {k}: {v}\n" for k, v in window.items())
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(tmp_path / "exp.yaml", text))
    assert info.value.exit_code == 2 and "window.mode" in str(info.value)
    make_config(device="cuda", energy={"sampler": sampler})  # the total window is what they measure


def test_a_totals_only_reading_gives_sub_spans_a_reason():
    reading = EnergyReading("zeus", "m", 2.0, total_j=10.0, per_device_j={"0": 10.0})
    assert "window totals only" in reading.sub_span_reason()


# --- item 6: one window per headline figure ---------------------------------------------------------------------


def test_steady_state_headline_figures_all_cover_the_steady_window():
    # two devices at 150 W and 50 W; batches of 2 requests: 0.5 s prefill, then 5 tokens 0.25 s apart, so the
    # steady spans (2 decoding) are 1.0 s per batch and hold tokens 2..5 of each request
    backend = FakeInferenceBackend(batch_size=2, output_tokens=5, step_s=0.25, ttft_s=0.5)
    devices = [FakeCounterDevice(backend.clock, lambda t: 150.0 * t, dev_id="0"),
               FakeCounterDevice(backend.clock, lambda t: 50.0 * t, dev_id="1", uuid="GPU-fake-1")]
    tracker = _tracker(backend.clock, devices, 4.0)
    backend.on_step = tracker.tick
    config = make_config(n_prompts=4, window={"mode": "steady_state"}, energy={"baseline": {"mode": "off"}})
    result = _measure(config, backend, tracker)
    steady_tokens, steady_s = 4 * 4, 2 * 1.0
    assert result.output_tokens == steady_tokens
    assert result.total_energy_j / result.output_tokens == pytest.approx(result.energy_per_token_j)
    # within one counter update period (1 ms here) of power at each span edge
    assert result.total_energy_j == pytest.approx(200.0 * steady_s, rel=1e-3)
    per_device = {d.id: d.energy_j for d in result.energy.devices}
    assert sum(per_device.values()) == pytest.approx(result.total_energy_j)
    assert per_device == pytest.approx({"0": 150.0 * steady_s, "1": 50.0 * steady_s}, rel=1e-3)
    assert result.inference_time_s == pytest.approx(steady_s)
    assert result.output_tokens_per_second == pytest.approx(steady_tokens / steady_s)
    # no model shape: each decode token costs 2 x N_compute; no first token (the prefill) is in the spans
    assert result.headline.flops == pytest.approx(steady_tokens * 2.0 * backend.parameters.compute)
    run = result.whole_run
    assert (run.n_requests, run.output_tokens, run.input_tokens, run.total_tokens) == (4, 20, 40, 60)
    assert result.flops.total > result.headline.flops


def _as_schema_1_1(result: ExperimentResult) -> dict:
    """The same figures under 1.1's names, with the copies 1.2 dropped (written out by hand, as 1.1 wrote them)."""
    data = json.loads(result.model_dump_json())
    head = data["windows"].get(data["measurement_methodology"]) or {}
    energy = data["energy"]
    energy["sampler"] = energy.pop("source")
    energy["total_energy_j"] = data["total_energy_j"]
    energy["adjusted_energy_j"] = data.pop("adjusted_energy_j")
    energy["per_device_j"] = {d["id"]: d["energy_j"] for d in energy["devices"]} or None
    data.update(schema_version="1.1", total_inference_time_sec=data.pop("inference_time_s"),
                model_load_sec=data.pop("model_load_s"), avg_energy_per_token_j=data.pop("energy_per_token_j"),
                avg_energy_per_token_adjusted_j=data.pop("adjusted_energy_per_token_j"),
                total_flops=head.get("flops"), flops_method=(data["flops"] or {}).get("method"),
                warmup_batches=data["warmup"]["batches"])
    data["whole_run"]["flops"] = (data["flops"] or {}).get("total")
    return data


def _as_schema_1_0(result: ExperimentResult) -> dict:
    """The same figures as a 1.0 result.json wrote them: whole-run counts and FLOPs at the top level."""
    data = _as_schema_1_1(result)
    run = data.pop("whole_run")
    data.update(schema_version="1.0", n_requests=run["n_requests"], input_tokens=run["input_tokens"],
                output_tokens=run["output_tokens"], total_tokens=run["total_tokens"], total_flops=run["flops"],
                avg_tokens_per_second=data.pop("output_tokens_per_second"))
    for w in data["windows"].values():
        w.pop("energy_unavailable_reason", None)
        w.pop("flops", None)
    data["energy"].pop("resolution_ms", None)
    return data


def test_a_schema_1_0_result_is_read_with_its_spans_named(tmp_path):
    steady = {"start_offset_s": 0.5, "duration_s": 2.0, "output_tokens": 16, "tokens_per_second": 8.0,
              "energy_j": 400.0, "adjusted_energy_j": 0.0, "energy_per_token_j": 25.0,
              "adjusted_energy_per_token_j": 0.0, "mean_power_w": 200.0, "method": "m"}
    total = {**steady, "start_offset_s": 0.0, "duration_s": 3.0, "output_tokens": 32, "tokens_per_second": 32 / 3,
             "energy_j": 500.0}
    new = make_result(config=make_config(window={"mode": "steady_state"}), measurement_methodology="steady_state",
                      output_tokens=16, output_tokens_per_second=8.0, inference_time_s=2.0,
                      total_energy_j=400.0, energy_per_token_j=25.0, windows={"total": total, "steady_state": steady},
                      adjusted_energy_j=0.0,
                      energy={"source": "nvml", "method": "m", "devices": [{"id": "0", "energy_j": 400.0}],
                              "baseline": {"power_w": 250.0, "duration_s": 5.0, "measured_at": "2025-01-01T12:00:00Z"}})
    old = _as_schema_1_0(new)
    old["output_tokens"] = 32  # 1.0 wrote the whole run's output tokens at the top level
    old["energy"]["per_device_j"] = {"0": 500.0}  # and the total window's per-device energy
    old["energy"]["devices"][0]["energy_j"] = 500.0
    exp = tmp_path / "old-run"
    exp.mkdir()
    (exp / "result.json").write_text(json.dumps(old))
    loaded = load_experiment(exp)
    assert loaded.ok, loaded.failure
    r = loaded.result
    assert r.schema_version == "1.0"
    assert (r.output_tokens, r.output_tokens_per_second, r.whole_run.output_tokens) == (16, 8.0, 32)
    assert r.total_energy_j / r.output_tokens == pytest.approx(r.energy_per_token_j)
    assert r.headline.flops is None and r.flops.total == new.flops.total  # 1.0 had no steady-window FLOPs
    assert r.energy.devices[0].energy_j is None  # 1.0's per-device energy was the total window's, not the headline's
    assert (r.energy.source, r.inference_time_s, r.warmup.batches) == ("nvml", 2.0, new.warmup.batches)
    # 1.0 floored adjusted energy at 0; it is recomputed signed from the baseline: 400 - 250 x 2 = -100 J
    assert r.adjusted_energy_j == pytest.approx(-100.0)
    assert r.adjusted_energy_per_token_j == pytest.approx(-100.0 / 16)


def test_a_schema_1_1_result_reads_as_the_same_result(tmp_path):
    """A measured steady-state run on two GPUs with a baseline, written under 1.1's names and copies, reads back as
    exactly the 1.2 result it came from: every renamed field keeps its value, every dropped copy agreed."""
    backend = FakeInferenceBackend(batch_size=2, output_tokens=5, step_s=0.25, ttft_s=0.5)
    devices = [FakeCounterDevice(backend.clock, lambda t: 150.0 * t, dev_id="0"),
               FakeCounterDevice(backend.clock, lambda t: 50.0 * t, dev_id="1", uuid="GPU-fake-1")]
    tracker = _tracker(backend.clock, devices, 4.0)
    backend.on_step = tracker.tick
    result = _measure(make_config(n_prompts=4, window={"mode": "steady_state"}), backend, tracker)
    assert result.energy.baseline is not None and result.adjusted_energy_j is not None
    old = _as_schema_1_1(result)
    assert old["total_flops"] == result.windows["steady_state"].flops and old["energy"]["per_device_j"]
    exp = tmp_path / "run-1-1"
    exp.mkdir()
    (exp / "result.json").write_text(json.dumps(old))
    loaded = load_experiment(exp)
    assert loaded.ok, loaded.failure
    assert loaded.result.schema_version == "1.1"
    assert loaded.result == result.model_copy(update={"schema_version": "1.1"})


# --- issue 24 item 1: the power shape reaches the window's edges ----------------------------------------------------


def test_power_shape_is_held_to_the_first_and_last_counter_points_so_edge_sub_spans_are_exact():
    # 336 W constant, a counter updating every 100 ms, the sampler on at 10 Hz ticking at the window's opening read
    # and every 100 ms after, as its thread does (reading the counter every fifth tick): the window's first and last
    # 0.3 s hold 336 x 0.3 = 100.8 J each. A shape covering only first-to-last power sample gave the half period
    # between the first counter point (half a period before the opening read) and the first sample no energy, so
    # it was pushed into the window's start (+17 % here), and pulled the energy after the last sample before it.
    clock = FakeClock(10.03)
    dev = FakeCounterDevice(clock, lambda t: 336.0 * t, update_period_s=0.1)
    tracker = _tracker(clock, [dev], 10.0)
    tracker.update_period_s = 0.1
    tracker.start_tracking()
    for k in range(25):
        clock.now = 10.03 + 0.1 * k
        tracker.tick()
    clock.now = 12.53
    reading = tracker.stop_tracking()
    assert reading.energy_between(10.03, 10.33) == pytest.approx(336.0 * 0.3, rel=0.01)
    assert reading.energy_between(12.23, 12.53) == pytest.approx(336.0 * 0.3, rel=0.01)
    assert reading.energy_between(10.03, 12.53) == pytest.approx(336.0 * 2.5, rel=0.01)


def test_windowed_headline_at_constant_power_with_the_sampler_on_is_the_power_times_the_span():
    # 336 W throughout, counter updating every 100 ms, the sampler ticking at the window's opening read and every
    # 100 ms after (as the sampler thread does): a 2.5 s windowed headline holds 336 x 2.5 = 840 J (the shape starting
    # at the first sample put the energy between the first counter point, half a period before the opening read, and
    # that sample into the window: 857 J)
    backend = FakeInferenceBackend(batch_size=2, output_tokens=10, step_s=0.1, ttft_s=0.0)
    backend.clock.now = 5.03
    dev = FakeCounterDevice(backend.clock, lambda t: 336.0 * t, update_period_s=0.1)
    tracker = _tracker(backend.clock, [dev], 10.0)
    tracker.update_period_s = 0.1
    backend.on_step = tracker.tick
    config = make_config(n_prompts=2, warmup={"n_batches": 0}, energy={"baseline": {"mode": "off"}},
                         window={"mode": "windowed", "duration_s": 2.5})
    result = _measure(config, backend, tracker)
    assert result.inference_time_s == pytest.approx(2.5)
    assert result.total_energy_j == pytest.approx(336.0 * 2.5, rel=0.005)


def test_sub_spans_follow_power_that_varies_between_counter_reads_through_stop_tracking():
    # power 200 + 100 sin(2 pi t) W (a 1 s cycle), a counter updating every 100 ms and read every 0.5 s (the
    # sampler's counter rate), power sampled every 50 ms: each quarter-cycle span's truth is the power's integral
    # over it, computed here in closed form. Spreading a counter interval's joules evenly in time (no power shape)
    # misplaces a quarter cycle's energy by ~30 %; the sampled power shape must put it where the power was.
    def joules(t):
        return 200.0 * t - 100.0 / (2 * math.pi) * math.cos(2 * math.pi * t)

    clock = FakeClock(10.03)
    dev = FakeCounterDevice(clock, joules, update_period_s=0.1)
    tracker = _tracker(clock, [dev], 20.0)
    tracker.update_period_s = 0.1
    tracker.start_tracking()
    for k in range(51):
        clock.now = 10.03 + 0.05 * k
        tracker.tick()
    clock.now = 12.56
    reading = tracker.stop_tracking()
    spans = [(10.0 + 0.25 * q + 0.03, 10.25 + 0.25 * q + 0.03) for q in range(1, 9)]
    for t0, t1 in spans:
        assert reading.energy_between(t0, t1) == pytest.approx(joules(t1) - joules(t0), rel=0.03), (t0, t1)
    assert reading.energy_between(10.03, 12.53) == pytest.approx(joules(12.53) - joules(10.03), rel=0.01)


# --- a window the counter never updated in -----------------------------------------------------------------------


def test_phases_of_a_window_the_counter_never_updated_in_are_null_with_the_reason():
    # 250 W on a counter that updates every 2 s; a 1.2 s run (0.2 s prefill, 5 tokens 0.2 s apart, two batches)
    # starting just after an update, sampled at 20 Hz: the counter reads the same value at both window bounds, so
    # every span inside would read 0 J though 250 W ran throughout. Phase and steady-state energy are null, say why,
    # and the run is flagged; 0 J is not a measurement.
    backend = FakeInferenceBackend(batch_size=2, output_tokens=3, step_s=0.1, ttft_s=0.1)
    backend.clock.now = 20.05
    dev = FakeCounterDevice(backend.clock, lambda t: 250.0 * t, update_period_s=2.0)
    tracker = _tracker(backend.clock, [dev], 20.0)
    tracker.update_period_s = 2.0
    backend.on_step = tracker.tick
    config = make_config(n_prompts=4, warmup={"n_batches": 0}, energy={"baseline": {"mode": "off"}})
    result = _measure(config, backend, tracker)
    assert result.inference_time_s < 2.0
    assert result.phases.prefill.energy_j is None and result.phases.decode.energy_j is None
    assert result.phases.prefill.energy_share is None and result.phases.decode.energy_share is None
    reason = result.phases.energy_unavailable_reason
    assert reason and "did not update" in reason and "2000 ms" in reason
    steady = result.windows["steady_state"]
    assert steady.energy_j is None and "did not update" in steady.energy_unavailable_reason
    assert "counter_no_tick" in result.quality_flags
