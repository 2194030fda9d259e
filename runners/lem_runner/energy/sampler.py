"""The sampler thread: reads every device's state (power, temperature, clocks, memory, utilisation, clock-event
reasons) at a fixed rate, and its energy counter every few ticks, for the timeseries, the integrated-power cross-check
and the phase split. It runs beside the workload, so it must stay cheap: the state queries take microseconds, but an
NVML energy-counter read takes about 3 ms of CPU (measured on an H100), so the counter is read at ``COUNTER_HZ`` and
the power samples in between carry the time resolution."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lem_runner.energy.counter import CounterTrack
from lem_runner.energy.device import CounterDevice, DeviceSample

#: how often the sampler reads the energy counters (the window's bounds are always read)
COUNTER_HZ = 2.0


@dataclass(frozen=True)
class SampleRow:
    t: float
    device: str
    energy_mj: float | None  # None on ticks that did not read the counter
    sample: DeviceSample


class PowerSampler:
    """Ticks at ``hz`` in a daemon thread between ``start`` and ``stop``; ``tick`` also works on its own (tests)."""

    def __init__(self, devices: Sequence[CounterDevice], tracks: dict[str, CounterTrack], hz: float,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if hz <= 0:
            raise ValueError("sampling rate must be positive")
        self.devices = list(devices)
        self.tracks = tracks
        self.period_s = 1.0 / hz
        self.counter_every = max(1, round(hz / COUNTER_HZ))
        self.clock = clock
        self.ticks = 0
        self.rows: list[SampleRow] = []
        self.errors: list[str] = []
        self.cpu_s: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        read_counter = self.ticks % self.counter_every == 0
        self.ticks += 1
        for dev in self.devices:
            t = self.clock()
            mj = None
            if read_counter:
                mj = dev.energy_mj()
                self.tracks[dev.id].feed(t, mj)
            self.rows.append(SampleRow(t, dev.id, mj, dev.sample()))

    def _run(self) -> None:
        cpu0 = time.thread_time()
        next_t = self.clock()
        try:
            while not self._stop.is_set():
                self.tick()
                next_t += self.period_s
                self._stop.wait(max(0.0, next_t - self.clock()))
        except Exception as exc:  # a device that stops answering ends the timeseries, not the run
            self.errors.append(f"sampler stopped: {type(exc).__name__}: {exc}")
        finally:
            self.cpu_s = time.thread_time() - cpu0

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lem-power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
