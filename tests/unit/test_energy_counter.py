"""Counter arithmetic, the counter tracker, the sampler and the idle baseline, driven by FakeCounterDevice on a
FakeClock (tests/device_contract.py holds the assertions the real NVML device must pass too)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import make_config
from device_contract import assert_counter_device_contract
from fakes import FakeClock, FakeCounterDevice, FakeEnergySource
from lem_runner.contract.config import BaselineConfig
from lem_runner.contract.energy import DeviceIdleState, IdleBaseline
from lem_runner.energy.counter import CounterTrack, cumulative_integral, measure_update_period
from lem_runner.energy.sampler import PowerSampler
from lem_runner.energy.tracker import CounterEnergySource, integrate_power
from lem_runner.measurement.baseline import adjusted_energy, matching_cached, obtain_baseline

# --- counter arithmetic --------------------------------------------------------------------------------------------


def test_deltas_accumulate_in_joules():
    track = CounterTrack()
    for t, mj in [(0.0, 5_000), (1.0, 7_000), (2.0, 10_000)]:
        track.feed(t, mj)
    assert track.total_j == 5.0
    assert track.between(0.0, 2.0) == 5.0


def test_a_wrap_at_the_known_range_is_joined():
    track = CounterTrack(wrap_mj=1_000_000)
    track.feed(0.0, 999_000)
    track.feed(1.0, 1_500)  # passed the top: 1000 mJ before the wrap, 1500 after
    assert track.total_j == pytest.approx(2.5)
    assert (track.wraps, track.resets) == (1, 0)


def test_a_reset_continues_from_the_new_reading():
    track = CounterTrack()  # NVML: no known range, so going backwards is a driver reload
    track.feed(0.0, 50_000)
    track.feed(1.0, 60_000)
    track.feed(2.0, 4_000)  # reloaded; 4 J since the reset
    track.feed(3.0, 9_000)
    assert track.total_j == pytest.approx(10 + 4 + 5)
    assert track.resets == 1


def test_an_implausible_wrap_is_a_reset():
    track = CounterTrack(wrap_mj=1_000_000)
    track.feed(0.0, 600_000)
    track.feed(1.0, 100_000)  # a wrap would mean 500 J in a second; half the range or more is a reset
    assert (track.wraps, track.resets) == (0, 1)
    assert track.total_j == pytest.approx(100.0)


def test_repeated_values_are_not_points_and_updates_sit_midway():
    track = CounterTrack(update_period_s=0.1)
    for t, mj in [(0.0, 0), (0.1, 0), (0.2, 0), (0.3, 1_000), (0.4, 1_000), (0.5, 2_000)]:
        track.feed(t, mj)
    assert track.times == [-0.05, 0.25, 0.45]  # the first read too: its value was last updated within (-0.1, 0]
    assert track.reads == 6
    assert track.between(-0.05, 0.25) == pytest.approx(1.0)  # the first update's joules, by its placed instant
    assert track.at(0.35) == pytest.approx(1.5)


def test_a_sparse_read_places_the_update_within_one_period_of_it():
    track = CounterTrack(update_period_s=0.1)
    track.feed(0.0, 0)
    track.feed(3.0, 30_000)  # three seconds later: the last update was in (2.9, 3.0]
    assert track.times == [pytest.approx(-0.05), pytest.approx(2.95)]
    unknown = CounterTrack()
    unknown.feed(0.0, 0)
    unknown.feed(3.0, 30_000)
    assert unknown.times == [0.0, 3.0]


def test_power_shape_apportions_between_counter_points():
    track = CounterTrack(update_period_s=1.0)
    track.feed(0.0, 0)
    track.feed(1.0, 100_000)  # 100 J over a second, placed at 0.5
    track.feed(2.0, 200_000)  # placed at 1.5
    # power 300 W over [0.5, 0.75], 33.3 W after: three quarters of the energy in the first quarter-second
    track.shape = cumulative_integral([0.5, 0.75, 0.75001, 1.5], [300.0, 300.0, 100 / 3, 100 / 3])
    assert track.between(0.5, 0.75) == pytest.approx(75.0, rel=1e-3)
    assert track.between(0.75, 1.5) == pytest.approx(25.0, rel=1e-3)
    assert track.between(track.times[0], track.times[-1]) == pytest.approx(200.0)  # the shape keeps the total


def test_cumulative_integral_is_the_trapezoid_rule():
    f = cumulative_integral([0.0, 1.0, 2.0], [0.0, 2.0, 2.0])
    assert (f(-1), f(0.5), f(1.0), f(2.0), f(9)) == pytest.approx((0.0, 0.25, 1.0, 3.0, 3.0))


def test_update_period_is_the_median_interval_between_changes():
    clock = FakeClock()
    dev = FakeCounterDevice(clock, lambda t: 100.0 * t, update_period_s=0.1)
    period = measure_update_period(dev.energy_mj, clock, clock.sleep, max_s=1.0, poll_s=0.001)
    assert period == pytest.approx(0.1, abs=0.002)


def test_a_counter_that_never_changes_has_no_period():
    clock = FakeClock()
    assert measure_update_period(lambda: 42, clock, clock.sleep, max_s=0.2) is None


# --- the fake device and its real twin's contract --------------------------------------------------------------------


def test_fake_counter_device_keeps_the_counter_device_contract():
    clock = FakeClock()
    dev = FakeCounterDevice(clock, lambda t: 250.0 * t, update_period_s=0.1)
    assert_counter_device_contract(dev, lambda: clock.advance(0.3))


# --- the tracker -------------------------------------------------------------------------------------------------------


def _tracker(clock, *devices, hz=0.0):
    return CounterEnergySource(list(devices), name="fake_counter", method="fake", sample_hz=hz, clock=clock,
                                sleep=clock.sleep)


def test_window_energy_is_the_counter_delta_per_device_and_their_sum():
    clock = FakeClock(10.0)
    a = FakeCounterDevice(clock, lambda t: 200.0 * t, dev_id="0", start_mj=123_456)
    b = FakeCounterDevice(clock, lambda t: 50.0 * t, dev_id="1", uuid="GPU-fake-1")
    tracker = _tracker(clock, a, b)
    tracker.start_tracking()
    clock.advance(2.0)
    reading = tracker.stop_tracking()
    assert reading.per_device_j == pytest.approx({"0": 400.0, "1": 100.0})
    assert reading.total_j == pytest.approx(500.0)
    assert reading.duration_s == pytest.approx(2.0)
    assert tracker.device_uuids() == ["GPU-fake-0", "GPU-fake-1"]


def test_a_reset_inside_the_window_loses_only_one_read_interval():
    clock = FakeClock()
    dev = FakeCounterDevice(clock, lambda t: 100.0 * t)
    tracker = _tracker(clock, dev, hz=10.0)
    tracker.start_tracking()
    sampler = tracker._sampler
    sampler.stop()  # drive the ticks by hand on the fake clock
    for _ in range(10):
        clock.advance(0.1)
        sampler.tick()
    dev.reset()
    for _ in range(10):
        clock.advance(0.1)
        sampler.tick()
    reading = tracker.stop_tracking()
    assert reading.counter_resets == 1
    assert 190.0 <= reading.total_j <= 200.0 + 1e-9


def test_sampler_ticks_read_state_every_tick_and_the_counter_every_few():
    clock = FakeClock()
    dev = FakeCounterDevice(clock, lambda t: 100.0 * t)
    tracks = {"0": CounterTrack()}
    sampler = PowerSampler([dev], tracks, hz=10.0, clock=clock)
    for _ in range(10):
        sampler.tick()
        clock.advance(0.1)
    assert len(sampler.rows) == 10
    assert [r.energy_mj is not None for r in sampler.rows] == [i % 5 == 0 for i in range(10)]
    assert all(r.sample.power_w == pytest.approx(100.0) for r in sampler.rows)
    assert tracks["0"].reads == 2


def test_the_real_sampler_thread_runs_at_its_rate_and_stops():
    clock = FakeClock()
    dev = FakeCounterDevice(clock, lambda t: 100.0 * t)
    sampler = PowerSampler([dev], {"0": CounterTrack()}, hz=50.0)  # real clock: a real thread
    sampler.start()
    time.sleep(0.3)
    sampler.stop()
    assert 5 <= len(sampler.rows) <= 30
    assert sampler.cpu_s is not None and sampler.cpu_s >= 0
    assert not sampler.errors


def test_a_device_that_fails_mid_run_ends_the_timeseries_not_the_run():
    class Failing(FakeCounterDevice):
        def sample(self):
            raise OSError("device fell off the bus")

    sampler = PowerSampler([Failing(FakeClock(), lambda t: t)], {"0": CounterTrack()}, hz=100.0)
    sampler.start()
    time.sleep(0.05)
    sampler.stop()
    assert sampler.errors and "fell off the bus" in sampler.errors[0]


def test_integrated_power_matches_the_counter_for_a_steady_load():
    clock = FakeClock()
    dev = FakeCounterDevice(clock, lambda t: 300.0 * t)
    tracker = _tracker(clock, dev, hz=10.0)
    tracker.start_tracking()
    tracker._sampler.stop()
    for _ in range(20):
        clock.advance(0.1)
        tracker._sampler.tick()
    reading = tracker.stop_tracking()
    integrated = integrate_power(reading.samples, "0", reading.t_start, reading.t_end)
    assert integrated == pytest.approx(reading.total_j, rel=1e-6) == pytest.approx(600.0)


def test_integrate_power_needs_two_samples():
    assert integrate_power([], "0", 0.0, 1.0) is None


# --- idle baseline ---------------------------------------------------------------------------------------------------


def test_idle_baseline_is_counter_power_with_the_sampled_spread():
    clock = FakeClock()
    wobble = lambda t: 70.0 * t + 0.5 * ((t * 10) % 2)  # noqa: E731  ~70 W with a little ripple
    dev = FakeCounterDevice(clock, wobble)
    baseline = _tracker(clock, dev).idle_baseline(3.0)
    assert baseline is not None
    assert baseline.power_w == pytest.approx(70.0, abs=0.5)
    assert baseline.duration_s == pytest.approx(3.0, abs=0.11)
    assert baseline.n_samples >= 25 and baseline.power_std_w is not None and baseline.power_std_w > 0
    assert baseline.device_uuids == ["GPU-fake-0"] and baseline.source == "fresh"


def test_no_baseline_from_a_counter_that_did_not_move():
    clock = FakeClock()
    assert _tracker(clock, FakeCounterDevice(clock, lambda t: 0.0)).idle_baseline(1.0) is None


@pytest.mark.parametrize(("raw", "watts", "seconds", "expected"),
                         [(100.0, 20.0, 2.0, 60.0), (10.0, 20.0, 2.0, -30.0), (None, 20.0, 1.0, None),
                          (5.0, None, 1.0, None), (50.0, 0.0, 3.0, 50.0)])
def test_adjusted_energy_subtracts_idle_power_and_keeps_its_sign(raw, watts, seconds, expected):
    assert adjusted_energy(raw, watts, seconds) == expected


def _state(**changes) -> DeviceIdleState:
    fields = {"device": "0", "uuid": "GPU-fake-0", "memory_used_mib": 1024.0, "power_limit_w": 700.0,
              "sm_clock_mhz": 1980, "memory_clock_mhz": 2619, "persistence_mode": True}
    return DeviceIdleState(**{**fields, **changes})


def _cached(age_s: float, uuids=("GPU-fake-0",), power_w=65.0, **state) -> IdleBaseline:
    return IdleBaseline(power_w=power_w, power_std_w=1.0, duration_s=5.0, n_samples=50, device_uuids=list(uuids),
                        measured_at=datetime.now(UTC) - timedelta(seconds=age_s), conditions=[_state(**state)])


@pytest.mark.parametrize(("mode", "age", "uuids", "fits"), [
    ("cached", 10, ("GPU-fake-0",), True), ("cached", 7200, ("GPU-fake-0",), False),
    ("cached", 10, ("GPU-other",), False),
    ("cached", -60, ("GPU-fake-0",), False),  # from the future: a clock problem, not a baseline
])
def test_a_cached_baseline_fits_only_when_young_and_from_the_same_gpus(mode, age, uuids, fits):
    config = BaselineConfig(mode=mode, ttl_s=3600)
    got, why = matching_cached(config, [_cached(age, uuids)], ["GPU-fake-0"], [_state()], datetime.now(UTC))
    assert (got is not None) == fits
    assert fits or why


@pytest.mark.parametrize(("change", "needle"), [
    ({"memory_used_mib": 40960.0}, "memory in use"),  # another model resident (or a KV cache)
    ({"power_limit_w": 350.0}, "power limit"),
    ({"sm_clock_mhz": 1410}, "SM clock"),
    ({"memory_clock_mhz": 1593}, "memory clock"),
    ({"persistence_mode": False}, "persistence mode"),
])
def test_a_cached_baseline_is_not_reused_when_what_sets_idle_power_differs(change, needle):
    """Taken with another model resident, another power limit, other clocks or persistence: not this idle power."""
    clock = FakeClock(100.0)
    dev = FakeCounterDevice(clock, lambda t: 65.0 * t, persistence=change.get("persistence_mode", True))
    dev.state.update({k: v for k, v in change.items() if k != "persistence_mode"})
    energy = _tracker(clock, dev)
    got, reason = obtain_baseline(BaselineConfig(mode="cached", duration_s=2.0), energy, [_cached(10)],
                                  datetime.now(UTC))
    assert reason is None and got.source == "fresh" and got.duration_s == pytest.approx(2.0, abs=0.11)
    assert got.cache_check.outcome == "measured" and needle in got.cache_check.reason
    assert got.conditions == [dev.idle_state()]  # kept with the baseline: the next run's cache key


def test_a_cached_baseline_from_the_same_conditions_is_reused_after_a_short_spot_check():
    clock = FakeClock(100.0)
    dev = FakeCounterDevice(clock, lambda t: 66.0 * t)  # idles at 66 W now; the cache says 65 W (+1.5 %)
    dev.state["memory_used_mib"] = 1100.0  # allocator slack, same model
    got, _ = obtain_baseline(BaselineConfig(mode="cached", duration_s=5.0, spot_check_s=1.0), _tracker(clock, dev),
                             [_cached(10)], datetime.now(UTC))
    assert (got.source, got.power_w) == ("cached", 65.0)
    check = got.cache_check
    assert check.outcome == "reused" and check.spot_check_s == 1.0
    assert check.spot_check_w == pytest.approx(66.0, rel=1e-6) and check.drift_rel == pytest.approx(1 / 65, rel=1e-4)
    assert clock.now - 100.0 == pytest.approx(1.0, abs=0.11)  # one second spent, not the baseline's five


def test_a_cached_baseline_that_drifted_is_remeasured_and_says_so():
    clock = FakeClock(100.0)
    dev = FakeCounterDevice(clock, lambda t: 78.0 * t)  # idling warmer than when cached (65 W): +20 %
    got, _ = obtain_baseline(BaselineConfig(mode="cached", duration_s=3.0, spot_check_s=1.0), _tracker(clock, dev),
                             [_cached(10)], datetime.now(UTC))
    assert got.source == "fresh" and got.power_w == pytest.approx(78.0, rel=1e-6)
    check = got.cache_check
    assert check.outcome == "remeasured" and check.drift_rel == pytest.approx(13 / 65, rel=1e-4)
    assert check.cached_power_w == 65.0 and "beyond 5%" in check.reason
    assert clock.now - 100.0 == pytest.approx(4.0, abs=0.25)  # spot-check, then the full baseline


def test_the_newest_cached_baseline_under_the_same_conditions_is_the_one_checked():
    offered = [_cached(30, power_w=60.0, memory_used_mib=40960.0), _cached(20, power_w=64.0), _cached(50)]
    got, _ = matching_cached(BaselineConfig(), offered, ["GPU-fake-0"], [_state()], datetime.now(UTC))
    assert got is offered[1]


def test_obtain_baseline_measures_afresh_when_the_cache_does_not_fit():
    energy = FakeEnergySource(baseline_w=80.0)
    got, reason = obtain_baseline(BaselineConfig(mode="cached"), energy, [_cached(9999)], datetime.now(UTC))
    assert (got.power_w, got.source, reason) == (80.0, "fresh", None)
    assert got.cache_check.outcome == "measured" and "ttl_s" in got.cache_check.reason
    assert energy.baseline_calls == [5.0]


def test_obtain_baseline_says_why_there_is_none():
    off, why_off = obtain_baseline(BaselineConfig(mode="off"), FakeEnergySource(), [], datetime.now(UTC))
    none, why_none = obtain_baseline(BaselineConfig(), FakeEnergySource(joules=None, reason="cpu"), [],
                                     datetime.now(UTC))
    cannot, why_cannot = obtain_baseline(BaselineConfig(), FakeEnergySource(baseline_w=None), [],
                                         datetime.now(UTC))
    assert off is none is cannot is None
    assert "mode: off" in why_off and "no energy source" in why_none and "cannot measure" in why_cannot


def test_baseline_config_is_validated():
    with pytest.raises(ValueError, match="duration_s"):
        make_config(energy={"baseline": {"duration_s": 0.1}})
