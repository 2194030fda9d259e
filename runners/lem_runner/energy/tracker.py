"""An energy source over cumulative counters (NVML for GPUs, RAPL for CPU packages): counter reads at the window's
boundaries, a sampler thread between them whose power samples shape the series, and an idle baseline on request."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from lem_runner.contract.energy import DeviceIdleState, IdleBaseline
from lem_runner.energy.base import EnergyReading
from lem_runner.energy.counter import CounterTrack, cumulative_integral, measure_update_period
from lem_runner.energy.device import CounterDevice
from lem_runner.energy.sampler import PowerSampler, SampleRow

#: the baseline is sampled at least this often, even when the run's sampler is off, for its spread
_BASELINE_HZ = 10.0


class CounterEnergySource:
    """Tracks energy over a window on ``devices``, each with a cumulative counter."""

    def __init__(self, devices: Sequence[CounterDevice], name: str, method: str, sample_hz: float = 10.0,
                 clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], None] = time.sleep,
                 threaded: bool = True) -> None:
        """``threaded=False`` runs no sampler thread: whoever drives ``clock`` calls ``tick`` (deterministic runs on a
        fake clock)."""
        self.devices = list(devices)
        self.name = name
        self.method = method
        self.sample_hz = sample_hz
        self.clock = clock
        self.sleep = sleep
        self.threaded = threaded
        self.update_period_s: float | None = None
        self._tracks: dict[str, CounterTrack] = {}
        self._sampler: PowerSampler | None = None
        self._t0: float | None = None

    def is_available(self) -> bool:
        return bool(self.devices)

    def _read_all(self, tracks: dict[str, CounterTrack]) -> float:
        t = self.clock()
        for dev in self.devices:
            tracks[dev.id].feed(self.clock(), dev.energy_mj())
        return t

    def probe(self) -> None:
        """Measure the first device's counter update period (up to a second, outside the window)."""
        if self.devices and self.update_period_s is None:
            self.update_period_s = measure_update_period(self.devices[0].energy_mj, self.clock, self.sleep)

    def idle_baseline(self, duration_s: float) -> IdleBaseline | None:
        """Mean idle power from the counters over ``duration_s``; its spread from power sampled at >= 10 Hz (or from
        the counter's own increments where a device reports no power)."""
        tracks = {d.id: CounterTrack(d.wrap_mj, self.update_period_s) for d in self.devices}
        sampler = PowerSampler(self.devices, tracks, max(self.sample_hz, _BASELINE_HZ), self.clock)
        t0 = self._read_all(tracks)
        end = t0 + duration_s
        while self.clock() < end:
            sampler.tick()
            self.sleep(min(sampler.period_s, max(0.0, end - self.clock())))
        t1 = self._read_all(tracks)
        if t1 <= t0 or not all(track.ticked() for track in tracks.values()):
            return None
        per_device = {dev_id: track.total_j / (t1 - t0) for dev_id, track in tracks.items()}
        totals = _total_power_series(sampler.rows, len(self.devices))
        spread = "standard deviation of the total power sampled meanwhile"
        if not totals:
            totals = _counter_power_series(tracks, t0, t1)
            spread = ("standard deviation of the counters' power summed over devices per instant, on a grid of the "
                      "counter-read interval (no device reports power)")
        return IdleBaseline(
            power_w=sum(per_device.values()),
            power_std_w=statistics.stdev(totals) if len(totals) >= 2 else None,
            per_device_w=per_device,
            duration_s=t1 - t0,
            n_samples=len(totals),
            measured_at=datetime.now(UTC),
            device_uuids=[d.uuid for d in self.devices if d.uuid],
            method=f"{self.name} counter delta over {t1 - t0:.1f} s with nothing running, after the model loaded and "
                   "before warmup (the devices' idle power while holding the model: a GPU with a CUDA context idles "
                   f"above its no-context idle); spread: {spread}",
        )

    def device_uuids(self) -> list[str]:
        return [d.uuid for d in self.devices if d.uuid]

    def idle_conditions(self) -> list[DeviceIdleState]:
        return [d.idle_state() for d in self.devices]

    def start_tracking(self) -> None:
        self._tracks = {d.id: CounterTrack(d.wrap_mj, self.update_period_s) for d in self.devices}
        self._t0 = self._read_all(self._tracks)
        if self.sample_hz > 0:
            self._sampler = PowerSampler(self.devices, self._tracks, self.sample_hz, self.clock)
            if self.threaded:
                self._sampler.start()

    def tick(self) -> None:
        """One sampler tick now, while tracking (for ``threaded=False``)."""
        if self._sampler is not None:
            self._sampler.tick()

    def stop_tracking(self) -> EnergyReading:
        if self._t0 is None:
            raise RuntimeError("stop_tracking called before start_tracking")
        sampler, self._sampler = self._sampler, None
        warnings: list[str] = []
        if sampler is not None:  # stopped first, so no sampler read lands after the window's closing read
            sampler.stop()
            warnings.extend(sampler.errors)
        t1 = self._read_all(self._tracks)
        t0, self._t0 = self._t0, None
        rows = sampler.rows if sampler is not None else []
        for dev_id, track in self._tracks.items():
            pts = [(r.t, r.sample.power_w) for r in rows if r.device == dev_id and r.sample.power_w is not None]
            if len(pts) >= 2:
                track.shape = power_shape(track, pts)
        per_device = {dev_id: track.total_j for dev_id, track in self._tracks.items()}  # last read - first read
        persistence_off = [d.id for d in self.devices if d.persistence_mode() is False]
        others = {d.id: procs for d in self.devices if (procs := d.other_processes())}
        return EnergyReading(
            source=self.name,
            method=self.method,
            duration_s=t1 - t0,
            total_j=sum(per_device.values()),
            per_device_j=per_device,
            warnings=warnings,
            t_start=t0,
            t_end=t1,
            tracks=self._tracks,
            samples=rows,
            sample_hz=self.sample_hz if sampler is not None else None,
            sampler_cpu_s=sampler.cpu_s if sampler is not None else None,
            update_period_s=self.update_period_s,
            counter_resets=sum(track.resets for track in self._tracks.values()),
            persistence_off=persistence_off,
            other_processes=others,
            uuids={d.id: d.uuid for d in self.devices},
        )


def power_shape(track: CounterTrack, pts: list[tuple[float, float]]) -> Callable[[float], float]:
    """The cumulative sampled-power integral that apportions ``track``'s energy between its counter points, with the
    first sample's power held back to the first counter point and the last sample's out to the last read: a shape
    that began at the first sample gave the stretch before it no energy (pushing that stretch's joules into the
    window's opening sub-span), and one that ended at the last sample pulled the energy after it before it. At
    constant power every sub-span then gets power x time, to within the counter points' own placement (each within
    half an update period of the update it marks)."""
    if track.times and track.times[0] < pts[0][0]:
        pts = [(track.times[0], pts[0][1]), *pts]
    if track.last_read_t is not None and track.last_read_t > pts[-1][0]:
        pts = [*pts, (track.last_read_t, pts[-1][1])]
    return cumulative_integral([t for t, _ in pts], [w for _, w in pts])


def _total_power_series(rows: list[SampleRow], n_devices: int) -> list[float]:
    """Sampled power summed over devices, one value per tick (ticks where any device reported no power dropped)."""
    out: list[float] = []
    for i in range(0, len(rows) - n_devices + 1, n_devices):
        tick = rows[i : i + n_devices]
        if all(r.sample.power_w is not None for r in tick):
            out.append(sum(r.sample.power_w for r in tick))  # type: ignore[misc]
    return out


def _counter_power_series(tracks: dict[str, CounterTrack], t0: float, t1: float) -> list[float]:
    """Power summed over devices per instant, for devices without a power reading: every device's counter series is
    evaluated on one common grid whose step is no shorter than the counter-read interval (nor the update period),
    so a read pair that straddles a counter update a moment apart adds its joules to one grid step, not a spike."""
    reads = max(track.reads for track in tracks.values()) if tracks else 0
    if reads < 3 or t1 <= t0:
        return []
    period = max((track.update_period_s or 0.0) for track in tracks.values())
    step = max((t1 - t0) / (reads - 1), period)
    n = int((t1 - t0) / step + 1e-9)
    grid = [t0 + i * step for i in range(n + 1)]
    cumulative = [sum(track.at(t) for track in tracks.values()) for t in grid]
    return [(e1 - e0) / step for e0, e1 in zip(cumulative, cumulative[1:])]


def integrate_power(samples: list[SampleRow], device: str, t0: float, t1: float) -> float | None:
    """Trapezoid integral of one device's sampled power over [t0, t1], holding the first and last sample to the
    window's edges; None with fewer than two samples inside."""
    pts = [(r.t, r.sample.power_w) for r in samples if r.device == device and r.sample.power_w is not None
           and t0 <= r.t <= t1]
    if len(pts) < 2:
        return None
    pts = [(t0, pts[0][1]), *pts, (t1, pts[-1][1])]
    return sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(pts, pts[1:]))
