"""The idle baseline's spread in watts, checked against a square-wave idle power whose standard deviation is known
(40 W and 80 W, two seconds each: 20 W), for a device that reports power and for one that reports only its
counter (RAPL-like). `make mutate` found the counter-only path's J-per-step to W conversion unguarded."""

from __future__ import annotations

import math

import pytest
from fakes import FakeClock, FakeCounterDevice
from lem_runner.energy.tracker import CounterEnergySource

LOW, HIGH, PERIOD = 40.0, 80.0, 4.0  # slow against the counter-only series' ~0.4 s grid (counter reads)


def square_joules(t: float, phase: float = 0.0) -> float:
    """Energy used by t of a power that is LOW for the first half of each PERIOD and HIGH for the second."""
    t = t + phase
    n = math.floor(t / PERIOD)
    r = t - n * PERIOD
    half = PERIOD / 2
    return n * (LOW + HIGH) * half + (LOW * r if r < half else LOW * half + HIGH * (r - half))


def _baseline(*devices, clock):
    tracker = CounterEnergySource(list(devices), name="fake", method="fake", sample_hz=10.0, clock=clock,
                                   sleep=clock.sleep)
    tracker.probe()
    return tracker.idle_baseline(12.0)


@pytest.mark.parametrize("reports_power", [True, False])
def test_the_baseline_spread_is_the_idle_powers_standard_deviation_in_watts(reports_power):
    clock = FakeClock(100.25)  # transitions fall between sampler ticks
    dev = FakeCounterDevice(clock, square_joules, uuid=None, update_period_s=0.001, reports_power=reports_power)
    b = _baseline(dev, clock=clock)
    assert b.power_w == pytest.approx((LOW + HIGH) / 2, rel=0.03)
    # 20 W; a step straddling a transition averages both levels, which narrows it (counter-only: ~0.4 s steps, 1 in 5)
    assert (18.0 if reports_power else 15.0) <= b.power_std_w <= 20.5
    assert b.n_samples >= (110 if reports_power else 25)


def test_two_devices_in_antiphase_sum_to_a_steady_total():
    """Per instant the two devices' powers add to 120 W: the spread is of that sum, not of the devices pooled (20 W)."""
    clock = FakeClock(100.25)
    a = FakeCounterDevice(clock, square_joules, dev_id="0", uuid=None, update_period_s=0.001)
    b = FakeCounterDevice(clock, lambda t: square_joules(t, PERIOD / 2), dev_id="1", uuid=None, update_period_s=0.001)
    base = _baseline(a, b, clock=clock)
    assert base.power_w == pytest.approx(LOW + HIGH, rel=0.03)
    assert base.power_std_w is not None and base.power_std_w < 1.0
