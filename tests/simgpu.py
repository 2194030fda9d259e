"""Simulated-GPU scenarios for tests, and the truth they are checked against, computed here from the test's own
numbers (a numeric integral of the power the test scripted), never by asking the simulator.

The standard host has three GPUs whose CUDA order differs from NVML's: NVML (PCI bus order) numbers them
A=0 (1B), B=1 (3D), C=2 (5E); C is the fastest, so CUDA's default FASTEST_FIRST numbers them C, A, B. A CUDA
ordinal taken for an NVML index (or the reverse) therefore lands on another card, with another power.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from lem_runner.contract.nvml import SIMULATED_ENV

UUIDS = ("GPU-5a1e0a0a-0000-4000-8000-00000000000a", "GPU-5a1e0b0b-0000-4000-8000-00000000000b",
         "GPU-5a1e0c0c-0000-4000-8000-00000000000c")
BUS_IDS = ("00000000:1B:00.0", "00000000:3D:00.0", "00000000:5E:00.0")
#: constant power of A, B, C in watts: no two within a factor that a unit slip could mistake for another
POWER_W = (95.0, 310.0, 180.0)


def three_gpus(power=POWER_W, **top) -> dict:
    """The standard host's scenario document; ``power`` per device (watts or a trace), top-level fields in ``top``.
    Listed out of PCI order on purpose: NVML must sort them."""
    devices = [{"name": f"Simulated H100 {'ABC'[i]}", "uuid": UUIDS[i], "pci_bus_id": BUS_IDS[i], "power": power[i],
                "cuda_speed": 2.0 if i == 2 else 1.0} for i in range(3)]
    return {"t0": time.time() - 60.0, **top, "devices": [devices[2], devices[0], devices[1]]}


def write_scenario(directory: Path, doc: dict, name: str = "scenario.json") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def sim_env(path: Path) -> dict[str, str]:
    return {SIMULATED_ENV: str(path)}


def true_energy_j(power_w: Callable[[float], float], t_a: float, t_b: float, steps: int = 20000) -> float:
    """Trapezoid integral of ``power_w`` (a function of wall time) over [t_a, t_b]."""
    h = (t_b - t_a) / steps
    return h * (sum(power_w(t_a + i * h) for i in range(1, steps)) + (power_w(t_a) + power_w(t_b)) / 2)


def square_wave(t0: float, low_w: float, high_w: float, half_s: float) -> Callable[[float], float]:
    """Power low for half_s, high for half_s, repeating from t0 (the trace {segments: [...], repeat: true})."""
    return lambda t: low_w if ((t - t0) % (2 * half_s)) < half_s else high_w
