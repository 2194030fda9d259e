"""The clocks and power limit in force during the window, from the sampler's timeseries, and the ``clock_drift``
flag: a run whose SM or memory clock left the range the controller locked it to (a power cap, a thermal slowdown,
or another tool resetting the lock) did not measure the operating point it claims."""

from __future__ import annotations

from statistics import median

from lem_runner.contract.operating_point import GpuSetting, ObservedClocks, OperatingPoint
from lem_runner.energy.sampler import SampleRow
from lem_runner.measurement.quality import Flag

#: a sampled clock this far outside the locked range still counts as in it (the GPU picks the nearest supported
#: step, 15 MHz apart on Hopper, and NVML reports the clock of the instant)
TOLERANCE_MHZ = 30
#: more than this share of window samples outside the lock flags the run
MAX_OUTSIDE_SHARE = 0.05

METHOD = ("sampler ticks inside the window: SM clock nvmlDeviceGetClockInfo(NVML_CLOCK_SM), memory clock "
          f"(NVML_CLOCK_MEM), power limit nvmlDeviceGetEnforcedPowerLimit; a clock counts as outside a lock when it "
          f"is more than {TOLERANCE_MHZ} MHz outside [min, max]; clock_drift when over {MAX_OUTSIDE_SHARE:.0%} of "
          "samples are; settings match sampled devices by position (the config's device order)")


def _outside(values: list[int], lock: tuple[int, int] | None) -> float | None:
    if lock is None or not values:
        return None
    lo, hi = lock
    return sum(1 for v in values if v < lo - TOLERANCE_MHZ or v > hi + TOLERANCE_MHZ) / len(values)


def observe(samples: list[SampleRow], t_start: float, t_end: float,
            settings: list[GpuSetting]) -> tuple[OperatingPoint | None, list[Flag]]:
    """The observed operating point per device, with a ``clock_drift`` flag per device that left its lock. None when
    nothing was set and no sample carried a clock (a CPU run)."""
    window = [r for r in samples if t_start <= r.t <= t_end]
    devices = list(dict.fromkeys(r.device for r in samples))
    observed: dict[str, ObservedClocks] = {}
    flags: list[Flag] = []
    for i, dev in enumerate(devices):
        rows = [r.sample for r in window if r.device == dev]
        sm = [s.sm_clock_mhz for s in rows if s.sm_clock_mhz is not None]
        mem = [s.memory_clock_mhz for s in rows if s.memory_clock_mhz is not None]
        lim = [s.power_limit_w for s in rows if s.power_limit_w is not None]
        if not (sm or mem or lim) and not settings:
            continue
        setting = settings[i] if i < len(settings) else None
        sm_out = _outside(sm, setting.requested_sm_clock_mhz if setting else None)
        mem_out = _outside(mem, setting.requested_memory_clock_mhz if setting else None)
        observed[dev] = ObservedClocks(
            n_samples=len(rows),
            sm_clock_min_mhz=min(sm) if sm else None, sm_clock_median_mhz=median(sm) if sm else None,
            sm_clock_max_mhz=max(sm) if sm else None,
            memory_clock_min_mhz=min(mem) if mem else None, memory_clock_median_mhz=median(mem) if mem else None,
            memory_clock_max_mhz=max(mem) if mem else None,
            power_limit_min_w=min(lim) if lim else None, power_limit_max_w=max(lim) if lim else None,
            sm_clock_outside_lock_share=sm_out, memory_clock_outside_lock_share=mem_out,
        )
        for name, share, lock, values in (("SM", sm_out, setting and setting.requested_sm_clock_mhz, sm),
                                          ("memory", mem_out, setting and setting.requested_memory_clock_mhz, mem)):
            if share is not None and share > MAX_OUTSIDE_SHARE:
                flags.append(Flag("clock_drift", f"{dev}: the {name} clock left its lock [{lock[0]}, {lock[1]}] MHz "
                                                 f"in {share:.0%} of window samples (seen {min(values)}–{max(values)} "
                                                 "MHz): the run did not hold the operating point it was set to"))
        if setting and setting.applied_power_limit_w is not None and lim and (
                max(abs(v - setting.applied_power_limit_w) for v in lim) > 1.0):
            flags.append(Flag("clock_drift", f"{dev}: the enforced power limit ({min(lim):g}–{max(lim):g} W) differs "
                                             f"from the {setting.applied_power_limit_w:g} W set for the run"))
    if not observed and not settings:
        return None, []
    return OperatingPoint(settings=list(settings), observed=observed, method=METHOD), flags
