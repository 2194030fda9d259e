"""Cumulative energy counters read as a series: wrap-around and resets joined, energy between any two instants.

NVML's counter is an unsigned 64-bit count of millijoules since the driver loaded; RAPL's ``energy_uj`` wraps at
``max_energy_range_uj``. A reading lower than the one before is a wrap when the counter's range is known and the
wrapped increment is plausible (under half the range), else a reset (driver reload): the series then continues from
the new reading, and the energy between the last read before the reset and the reset itself is the only part lost.

The counter only moves at its own update period P (100 ms on an H100), so a read returns the value of the last update
before it. A repeated value is not a point of the series; a new value first seen at read r (previous read q) was
updated within (max(q, r - P), r], and is placed in the middle of that span (at r when P is unknown). The first read
is treated the same way (its value was last updated within (r - P, r]), so every point sits P/2 before its read on
average. Between those points the energy is spread in proportion to sampled power when a power series is given
(``shape``), else evenly in time; after the last point, up to the last read, the last interval's power carries on, so
the final half-period of a window is not lost.
"""

from __future__ import annotations

import bisect
import statistics
import threading
from collections.abc import Callable, Sequence


class CounterTrack:
    """One device's counter as a monotonic series of (time, joules since the first read)."""

    def __init__(self, wrap_mj: float | None = None, update_period_s: float | None = None) -> None:
        self.wrap_mj = wrap_mj
        self.update_period_s = update_period_s
        self.times: list[float] = []
        self.joules: list[float] = []
        self.resets = 0
        self.wraps = 0
        self.reads = 0
        self.last_read_t: float | None = None
        self.shape: Callable[[float], float] | None = None  # cumulative sampled-power integral, for apportioning
        self._last_raw: float | None = None
        self._lock = threading.Lock()

    def feed(self, t: float, raw_mj: float) -> None:
        """Add a raw reading taken at ``t`` (reads arrive in time order from at most two threads)."""
        with self._lock:
            if self._last_raw is None:
                self.times.append(t - self.update_period_s / 2 if self.update_period_s else t)
                self.joules.append(0.0)
                self._last_raw, self.last_read_t, self.reads = raw_mj, t, 1
                return
            if t < self.last_read_t:  # a read that lost the race to the lock: already covered
                return
            previous_t, self.last_read_t = self.last_read_t, t
            self.reads += 1
            if raw_mj == self._last_raw:
                return  # the counter has not updated since the last read
            delta = raw_mj - self._last_raw
            if delta < 0:
                if self.wrap_mj is not None and delta + self.wrap_mj < self.wrap_mj / 2:
                    delta += self.wrap_mj
                    self.wraps += 1
                else:
                    delta = raw_mj  # reset: the counter restarted from zero
                    self.resets += 1
            self._last_raw = raw_mj
            lag = min(self.update_period_s, t - previous_t) / 2 if self.update_period_s else 0.0
            self.times.append(max(self.times[-1], t - lag))
            self.joules.append(self.joules[-1] + delta / 1000.0)

    @property
    def total_j(self) -> float:
        return self.joules[-1] if self.joules else 0.0

    def at(self, t: float) -> float:
        """Cumulative joules at ``t``: between points in proportion to the power shape when there is one and it moved,
        else linearly in time; past the last point (up to the last read) at the last interval's power; clamped
        outside the reads."""
        xs, ys = self.times, self.joules
        if xs and t > xs[-1] and len(xs) >= 2 and self.last_read_t is not None:
            return ys[-1] + self._tail(min(t, self.last_read_t))
        if self.shape is None or not xs or t <= xs[0] or t >= xs[-1]:
            return interpolate(xs, ys, t)
        i = bisect.bisect_right(xs, t)
        s0, s1 = self.shape(xs[i - 1]), self.shape(xs[i])
        if s1 <= s0:
            return interpolate(xs, ys, t)
        return ys[i - 1] + (ys[i] - ys[i - 1]) * (self.shape(t) - s0) / (s1 - s0)

    def _tail(self, t: float) -> float:
        """Joules from the last point to ``t`` (after it): the last interval's energy rate, shaped by sampled power
        where the shape moved over that interval."""
        (x0, x1), (y0, y1) = self.times[-2:], self.joules[-2:]
        if t <= x1 or x1 <= x0:
            return 0.0
        if self.shape is not None:
            s0, s1 = self.shape(x0), self.shape(x1)
            if s1 > s0 and self.shape(t) > s1:
                return (y1 - y0) * (self.shape(t) - s1) / (s1 - s0)
        return (y1 - y0) * (t - x1) / (x1 - x0)

    def between(self, t0: float, t1: float) -> float:
        return max(0.0, self.at(t1) - self.at(t0))

    def ticked(self) -> bool:
        """Whether the counter moved at all over the reads."""
        return self.total_j > 0


def interpolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    if not xs:
        raise ValueError("no points to interpolate")
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    i = bisect.bisect_right(xs, x)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def measure_update_period(
    read_mj: Callable[[], float],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    max_s: float = 1.0,
    changes: int = 6,
    poll_s: float = 0.001,
) -> float | None:
    """Median seconds between changes of the counter, polled every ``poll_s`` for up to ``max_s``; None when it
    changed fewer than twice (a counter that does not tick while idle, or one slower than ``max_s``)."""
    t_end = clock() + max_s
    last = read_mj()
    change_times: list[float] = []
    while clock() < t_end and len(change_times) < changes + 1:
        sleep(poll_s)
        value = read_mj()
        if value != last:
            change_times.append(clock())
            last = value
    if len(change_times) < 2:
        return None
    return statistics.median(b - a for a, b in zip(change_times, change_times[1:]))


def cumulative_integral(times: Sequence[float], values: Sequence[float]) -> Callable[[float], float]:
    """The running trapezoid integral of a sampled series, as a function of time (held flat outside the samples)."""
    cum = [0.0]
    for (t0, v0), (t1, v1) in zip(zip(times, values), zip(times[1:], values[1:])):
        cum.append(cum[-1] + (t1 - t0) * (v0 + v1) / 2)
    xs, vs = list(times), list(values)

    def integral(t: float) -> float:
        if not xs or t <= xs[0]:
            return 0.0
        if t >= xs[-1]:
            return cum[-1]
        i = bisect.bisect_right(xs, t) - 1
        v_t = interpolate(xs, vs, t)
        return cum[i] + (t - xs[i]) * (vs[i] + v_t) / 2

    return integral
