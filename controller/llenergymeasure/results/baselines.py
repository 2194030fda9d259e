"""The controller's idle-baseline cache: the newest fresh baseline per (backend, devices), handed to the next run
under ``energy.baseline.mode: cached``. The runner decides whether it still fits (age within ttl_s, same GPU UUIDs),
so a stale or foreign entry only costs a fresh measurement, never a wrong subtraction."""

from __future__ import annotations

import json
from pathlib import Path

from lem_runner.atomic import atomic_write_text
from lem_runner.contract import ExperimentConfig, ExperimentResult, IdleBaseline
from pydantic import ValidationError

from llenergymeasure.paths import cache_root


def _key(config: ExperimentConfig) -> str:
    key = f"{config.backend}:{','.join(map(str, config.devices))}"
    # idle power depends on the operating point: a baseline at 300 W / locked clocks is not one at the default
    return key + (f":gpu={config.gpu.model_dump_json(exclude_none=True)}" if config.gpu.requested else "")


class BaselineCache:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_root() / "baselines.json"

    def _entries(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # no cache yet, or a damaged one: the next run measures afresh and rewrites it
        return data if isinstance(data, dict) else {}

    def get(self, config: ExperimentConfig) -> IdleBaseline | None:
        if config.energy.baseline.mode != "cached":
            return None
        entry = self._entries().get(_key(config))
        try:
            return IdleBaseline.model_validate(entry) if entry else None
        except ValidationError:
            return None

    def put(self, config: ExperimentConfig, result: ExperimentResult) -> None:
        baseline = result.energy.baseline
        if baseline is None or baseline.source != "fresh":
            return
        entries = self._entries()
        entries[_key(config)] = json.loads(baseline.model_dump_json())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(entries, indent=2))
