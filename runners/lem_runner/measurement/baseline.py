"""Idle baseline: reuse a cached one when it is young enough and from the same GPUs, else measure it; and the
adjusted energy, raw minus what the idle devices would have drawn anyway over the same span. It keeps its sign: a
negative value means the baseline exceeds the window's mean power (a stale or hot baseline) and is flagged
``baseline_exceeds_raw``, never hidden by a floor at 0 (which would bias means over cycles upwards)."""

from __future__ import annotations

from datetime import datetime

from lem_runner.contract.config import BaselineConfig
from lem_runner.contract.result import IdleBaseline
from lem_runner.energy.base import EnergyBackend


def adjusted_energy(raw_j: float | None, baseline_w: float | None, duration_s: float) -> float | None:
    if raw_j is None or baseline_w is None:
        return None
    return raw_j - baseline_w * duration_s


def usable_cached(config: BaselineConfig, cached: IdleBaseline | None, device_uuids: list[str],
                  now: datetime) -> IdleBaseline | None:
    """The cached baseline marked as such, if mode is cached, it is within ttl_s and covers exactly these GPUs."""
    if config.mode != "cached" or cached is None or not device_uuids:
        return None
    age = (now - cached.measured_at).total_seconds()
    if not 0 <= age <= config.ttl_s or sorted(cached.device_uuids) != sorted(device_uuids):
        return None
    return cached.model_copy(update={"source": "cached"})


def obtain_baseline(config: BaselineConfig, energy: EnergyBackend, cached: IdleBaseline | None,
                    device_uuids: list[str], now: datetime) -> tuple[IdleBaseline | None, str | None]:
    """The baseline to subtract, or None and why there is none."""
    if config.mode == "off":
        return None, "idle baseline turned off (energy.baseline.mode: off)"
    if not energy.is_available():
        return None, "no energy source, so no idle baseline"
    reused = usable_cached(config, cached, device_uuids, now)
    if reused is not None:
        return reused, None
    fresh = energy.idle_baseline(config.duration_s)
    if fresh is None:
        return None, f"the {energy.name} source cannot measure an idle baseline"
    return fresh, None
