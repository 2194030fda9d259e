"""Measurement-quality warnings: each a code (for tables and tests) and a sentence saying what to distrust and why."""

from __future__ import annotations

from dataclasses import dataclass

from lem_runner.contract.nvml import SIMULATED_SOURCE
from lem_runner.contract.result import WindowFigures
from lem_runner.energy.base import EnergyReading
from lem_runner.energy.device import THROTTLE_MASK, throttle_names

MIN_WINDOW_S = 1.0  # below this, any counter's update period makes the figure coarse
MIN_SAMPLES = 10  # per device, for the integrated-power cross-check and the timeseries to mean anything
MAX_TEMP_DRIFT_C = 10.0
MAX_COUNTER_VS_INTEGRATED = 0.05


@dataclass(frozen=True)
class Flag:
    code: str
    message: str


def counter_vs_integrated(counter_j: float | None, integrated_j: float | None) -> float | None:
    if counter_j is None or integrated_j is None or counter_j <= 0:
        return None
    return (integrated_j - counter_j) / counter_j


def quality_flags(reading: EnergyReading, window_s: float, rel_diff: float | None,
                  prefill_spans: list[tuple[float, float]] = (), decode_spans: list[tuple[float, float]] = (),
                  headline: WindowFigures | None = None) -> list[Flag]:
    flags: list[Flag] = []
    if reading.source == SIMULATED_SOURCE:
        flags.append(Flag("simulated_device", "energy, power and GPU state come from lem's SIMULATED GPU "
                                              "(LEM_SIMULATED_GPU, lem_runner.simgpu), not from hardware: not a "
                                              "measurement"))
    if reading.total_j is None:
        return flags
    resolution = reading.resolution_s()
    if reading.sub_span_reason() is None and resolution:
        for name, spans in (("prefill", prefill_spans), ("decode", decode_spans)):
            mean_span = sum(b - a for a, b in spans) / len(spans) if spans else None
            if mean_span is not None and mean_span < resolution:
                flags.append(Flag("phase_resolution", f"{name} spans average {mean_span * 1000:.0f} ms, under the "
                                                      f"{resolution * 1000:.0f} ms the energy series resolves (its "
                                                      "interval between power samples, or between counter reads "
                                                      "without power readings): the phase split apportions each "
                                                      "interval in proportion to time or sampled power"))
                break
    period = reading.update_period_s
    if window_s < MIN_WINDOW_S or (period is not None and window_s < 10 * period):
        detail = f"; the counter updates every {period * 1000:.0f} ms" if period else ""
        flags.append(Flag("short_window", f"measurement window {window_s:.2f} s is short{detail}: the energy figure "
                                          "is coarse; use more prompts or a windowed span"))
    for dev, track in (reading.tracks or {}).items():
        if track.between(reading.t_start, reading.t_end) == 0:
            flags.append(Flag("counter_no_tick", f"energy counter of {dev} did not tick in the {window_s:.3f} s "
                                                 "window: its figure is 0 only because the window is too short"))
    if reading.counter_resets:
        flags.append(Flag("counter_reset", f"an energy counter went backwards {reading.counter_resets} time(s) "
                                           "(driver reload): the series was rejoined, losing at most one read interval"))
    if reading.sample_hz:
        for dev in (reading.per_device_j or {}):
            n = sum(1 for r in reading.samples if r.device == dev and reading.t_start <= r.t <= reading.t_end)
            if n < MIN_SAMPLES:
                flags.append(Flag("few_samples", f"only {n} power samples of {dev} in the window (< {MIN_SAMPLES}): "
                                                 "the integrated-power cross-check is weak"))
    throttled = {}
    temps: dict[str, list[float]] = {}
    for r in reading.samples:
        if r.sample.clock_event_reasons and r.sample.clock_event_reasons & THROTTLE_MASK:
            throttled.setdefault(r.device, set()).update(throttle_names(r.sample.clock_event_reasons))
        if r.sample.temperature_c is not None:
            temps.setdefault(r.device, []).append(r.sample.temperature_c)
    for dev, names in throttled.items():
        flags.append(Flag("throttling", f"{dev} was throttled during the window ({', '.join(sorted(names))}): "
                                        "clocks, throughput and energy reflect the throttled state"))
    for dev, ts in temps.items():
        if max(ts) - min(ts) > MAX_TEMP_DRIFT_C:
            flags.append(Flag("temperature_drift", f"{dev} temperature moved {max(ts) - min(ts):.0f} °C during the "
                                                   f"window (> {MAX_TEMP_DRIFT_C:.0f}): not thermally settled"))
    for dev in reading.persistence_off:
        flags.append(Flag("persistence_off", f"persistence mode is off on {dev}: the driver may reinitialise the GPU "
                                             "between runs, disturbing idle power and first-run timings"))
    for dev, pids in reading.other_processes.items():
        flags.append(Flag("other_process", f"{len(pids)} other process(es) used {dev} during the run (pids "
                                           f"{', '.join(map(str, pids[:5]))}): their energy is in the counter too"))
    if headline is not None and headline.energy_j is not None and headline.adjusted_energy_j is not None \
            and headline.adjusted_energy_j < 0:
        idle_j = headline.energy_j - headline.adjusted_energy_j
        flags.append(Flag("baseline_exceeds_raw", f"the idle baseline over the window ({idle_j:.1f} J) exceeds the "
                                                  f"raw energy ({headline.energy_j:.1f} J): adjusted energy is "
                                                  "negative (kept signed); the baseline is stale or was taken hotter "
                                                  "than the run (re-measure it: energy.baseline.mode: fresh)"))
    if rel_diff is not None and abs(rel_diff) > MAX_COUNTER_VS_INTEGRATED:
        flags.append(Flag("counter_integrated_disagree", f"integrated sampled power differs from the counter by "
                                                         f"{rel_diff:+.1%} (> {MAX_COUNTER_VS_INTEGRATED:.0%})"))
    return flags
