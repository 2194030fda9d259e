"""Clocks and power limit in force during the window, from sampled rows with known values, and the clock_drift flag."""

from __future__ import annotations

from lem_runner.contract import GpuSetting
from lem_runner.energy.device import DeviceSample
from lem_runner.energy.sampler import SampleRow
from lem_runner.measurement.operating_point import observe


def _rows(sm: list[int], mem: int = 2619, limit: float = 300.0, dev: str = "0") -> list[SampleRow]:
    # one sample before the window (t = -1) that must not count, then one per 0.1 s inside [0, 10]
    pre = [SampleRow(-1.0, dev, None, DeviceSample(sm_clock_mhz=345, memory_clock_mhz=mem, power_limit_w=700.0))]
    return pre + [SampleRow(0.1 * i, dev, None, DeviceSample(sm_clock_mhz=c, memory_clock_mhz=mem, power_limit_w=limit))
                  for i, c in enumerate(sm)]


SETTING = GpuSetting(gpu="0", requested_sm_clock_mhz=(1200, 1200), applied_power_limit_w=300.0)


def test_a_held_lock_is_observed_and_not_flagged():
    sm = [1200] * 90 + [1215] * 10  # one 15 MHz step off: within the tolerance
    op, flags = observe(_rows(sm), 0.0, 10.0, [SETTING])
    o = op.observed["0"]
    assert (o.n_samples, o.sm_clock_min_mhz, o.sm_clock_median_mhz, o.sm_clock_max_mhz) == (100, 1200, 1200, 1215)
    assert (o.memory_clock_median_mhz, o.power_limit_min_w, o.power_limit_max_w) == (2619, 300.0, 300.0)
    assert o.sm_clock_outside_lock_share == 0.0 and flags == []
    assert op.settings == [SETTING]


def test_clocks_that_left_the_lock_are_flagged_with_the_share():
    sm = [1200] * 80 + [1050] * 20  # a power cap pulled the clock 150 MHz under the lock in 20 % of the window
    op, flags = observe(_rows(sm), 0.0, 10.0, [SETTING])
    assert op.observed["0"].sm_clock_outside_lock_share == 0.2
    (flag,) = flags
    assert flag.code == "clock_drift" and "in 20% of window samples" in flag.message and "1050–1200" in flag.message


def test_a_power_limit_other_than_the_one_set_is_flagged():
    _, flags = observe(_rows([1200] * 100, limit=350.0), 0.0, 10.0, [SETTING])
    assert [f.code for f in flags] == ["clock_drift"] and "power limit" in flags[0].message


def test_without_settings_the_clocks_are_recorded_and_nothing_is_flagged():
    op, flags = observe(_rows([1980] * 50 + [1755] * 50), 0.0, 10.0, [])
    assert op.settings == [] and op.observed["0"].sm_clock_median_mhz == (1980 + 1755) / 2 and flags == []


def test_a_cpu_run_has_no_operating_point():
    rows = [SampleRow(0.1 * i, "package-0", None, DeviceSample(power_w=20.0)) for i in range(10)]
    assert observe(rows, 0.0, 1.0, []) == (None, [])


def test_the_timeseries_keeps_memory_clock_and_power_limit(tmp_path):
    import pyarrow.parquet as pq
    from lem_runner.energy.timeseries import write_timeseries

    write_timeseries(_rows([1200, 1215]), tmp_path / "ts.parquet", 0.0)
    table = pq.read_table(tmp_path / "ts.parquet").to_pydict()
    assert table["memory_clock_mhz"] == [2619, 2619, 2619] and table["power_limit_w"] == [700.0, 300.0, 300.0]
