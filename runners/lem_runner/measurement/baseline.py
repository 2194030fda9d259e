"""Idle baseline: reuse a cached one when it is young enough and from the same GPUs, else measure it; and the
adjusted energy, raw minus what the idle devices would have drawn anyway over the same span. It keeps its sign: a
negative value means the baseline exceeds the window's mean power (a stale or hot baseline) and is flagged
``baseline_exceeds_raw``, never hidden by a floor at 0 (which would bias means over cycles upwards)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from lem_runner.contract.config import BaselineConfig
from lem_runner.contract.energy import BaselineCacheCheck, DeviceIdleState, IdleBaseline
from lem_runner.energy.base import EnergySource


def adjusted_energy(raw_j: float | None, baseline_w: float | None, duration_s: float) -> float | None:
    if raw_j is None or baseline_w is None:
        return None
    return raw_j - baseline_w * duration_s


#: memory in use may differ this much (MiB, or this share of it, whichever is larger) and still count as the same
#: resident model: allocator slack, not another model or KV cache
MEMORY_SLACK_MIB = 256.0
MEMORY_SLACK_REL = 0.02
POWER_LIMIT_SLACK_W = 1.0


def _state_difference(then: DeviceIdleState, now: DeviceIdleState) -> str | None:
    """How one device's idle-relevant state differs from when a baseline was taken, or None when it does not."""
    name = now.uuid or now.device
    if then.memory_used_mib is None or now.memory_used_mib is None:
        if then.memory_used_mib != now.memory_used_mib:
            return f"{name}: memory in use known only {'then' if now.memory_used_mib is None else 'now'}"
    elif abs(then.memory_used_mib - now.memory_used_mib) > max(MEMORY_SLACK_MIB,
                                                                 MEMORY_SLACK_REL * then.memory_used_mib):
        return (f"{name}: memory in use {now.memory_used_mib:.0f} MiB vs {then.memory_used_mib:.0f} MiB then "
                "(another model or KV cache)")
    if then.power_limit_w is None or now.power_limit_w is None:
        if then.power_limit_w != now.power_limit_w:
            return f"{name}: power limit known only {'then' if now.power_limit_w is None else 'now'}"
    elif abs(then.power_limit_w - now.power_limit_w) > POWER_LIMIT_SLACK_W:
        return f"{name}: power limit {now.power_limit_w:.0f} W vs {then.power_limit_w:.0f} W then"
    for field, label in (("sm_clock_mhz", "SM clock"), ("memory_clock_mhz", "memory clock"),
                         ("persistence_mode", "persistence mode")):
        if getattr(then, field) != getattr(now, field):
            return f"{name}: {label} {getattr(now, field)} vs {getattr(then, field)} then"
    return None


def conditions_difference(then: list[DeviceIdleState], now: list[DeviceIdleState]) -> str | None:
    """Why a baseline taken under ``then`` does not describe the devices ``now``, or None when it does. Devices are
    matched by UUID (by id where a device has none)."""
    key = lambda d: d.uuid or d.device  # noqa: E731
    before = {key(d): d for d in then}
    if sorted(before) != sorted(key(d) for d in now):
        return f"other devices: {sorted(before) or 'none recorded'} then, {sorted(key(d) for d in now)} now"
    for state in now:
        if (why := _state_difference(before[key(state)], state)) is not None:
            return why
    return None


def matching_cached(config: BaselineConfig, offered: Sequence[IdleBaseline], device_uuids: list[str],
                    conditions: list[DeviceIdleState], now: datetime) -> tuple[IdleBaseline | None, str]:
    """The newest offered baseline within ttl_s, from exactly these GPUs, taken under these conditions; or None and
    why none fits."""
    if not device_uuids:
        return None, "the devices have no identity (UUID) to match a cached baseline to"
    if not offered:
        return None, "no cached baseline for this backend and these devices"
    reasons = []
    for cached in sorted(offered, key=lambda b: b.measured_at, reverse=True):
        age = (now - cached.measured_at).total_seconds()
        if not 0 <= age <= config.ttl_s:
            reasons.append(f"taken {age:.0f} s ago (ttl_s {config.ttl_s:g})")
        elif sorted(cached.device_uuids) != sorted(device_uuids):
            reasons.append(f"from GPUs {sorted(cached.device_uuids)}")
        elif (why := conditions_difference(cached.conditions, conditions)) is not None:
            reasons.append(why)
        else:
            return cached, ""
    return None, "no cached baseline fits: " + "; ".join(reasons)


def obtain_baseline(config: BaselineConfig, energy: EnergySource, offered: Sequence[IdleBaseline],
                    now: datetime) -> tuple[IdleBaseline | None, str | None]:
    """The baseline to subtract, or None and why there is none.

    Under mode ``cached``, the newest offered baseline taken under the same device conditions is spot-checked with a
    short idle measurement: within ``drift_tolerance`` it is reused, else the baseline is measured afresh (the idle
    power moved: temperature, a background process, a changed state NVML does not report). Every outcome is
    recorded in ``cache_check``."""
    if config.mode == "off":
        return None, "idle baseline turned off (energy.baseline.mode: off)"
    if not energy.is_available():
        return None, "no energy source, so no idle baseline"
    conditions = energy.idle_conditions()
    check: BaselineCacheCheck | None = None
    if config.mode == "cached":
        cached, why_not = matching_cached(config, offered, energy.device_uuids(), conditions, now)
        if cached is None:
            check = BaselineCacheCheck(outcome="measured", reason=why_not)
        else:
            spot_s = min(config.spot_check_s, config.duration_s)
            spot = energy.idle_baseline(spot_s)
            figures = {"cached_power_w": cached.power_w, "spot_check_s": spot_s,
                       "tolerance_rel": config.drift_tolerance}
            if spot is None:
                check = BaselineCacheCheck(outcome="remeasured", reason="the spot-check measured nothing", **figures)
            else:
                drift = (spot.power_w - cached.power_w) / cached.power_w if cached.power_w > 0 else math.inf
                figures.update(spot_check_w=spot.power_w, drift_rel=drift if math.isfinite(drift) else None)
                verdict = (f"spot-check {spot.power_w:.1f} W over {spot_s:g} s vs cached {cached.power_w:.1f} W "
                           f"({drift:+.1%})")
                if abs(drift) <= config.drift_tolerance:
                    check = BaselineCacheCheck(outcome="reused", reason=f"{verdict}: within "
                                               f"{config.drift_tolerance:.0%}", **figures)
                    return cached.model_copy(update={"source": "cached", "cache_check": check}), None
                check = BaselineCacheCheck(outcome="remeasured", reason=f"{verdict}: beyond "
                                           f"{config.drift_tolerance:.0%}", **figures)
    fresh = energy.idle_baseline(config.duration_s)
    if fresh is None:
        return None, f"the {energy.name} source cannot measure an idle baseline"
    return fresh.model_copy(update={"conditions": conditions, "cache_check": check}), None
