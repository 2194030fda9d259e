"""The controller's idle-baseline cache: fresh baselines per (backend, devices), one per set of device conditions
(GPU UUIDs, memory in use, power limit, clocks, persistence mode), newest first, all handed to the next run under
``energy.baseline.mode: cached``. The controller cannot read those conditions before the runner has loaded the model
(it may be in a container), so the runner picks the one taken under its own conditions and spot-checks it: a stale
or foreign entry only costs a fresh measurement, never a wrong subtraction."""

from __future__ import annotations

import json
from pathlib import Path

from lem_runner.contract import ExperimentConfig, ExperimentResult, IdleBaseline
from lem_runner.contract.atomic import atomic_write_text
from pydantic import ValidationError

from llenergymeasure.host.cache import cache_root

#: baselines kept per (backend, devices): one per distinct device conditions, the oldest dropped beyond this
MAX_PER_KEY = 16


def _key(config: ExperimentConfig) -> str:
    key = f"{config.backend}:{','.join(map(str, config.devices))}"
    # idle power depends on the operating point: a baseline at 300 W / locked clocks is not one at the default
    return key + (f":gpu={config.gpu.model_dump_json(exclude_none=True)}" if config.gpu.requested else "")


def _conditions_key(baseline: IdleBaseline) -> str:
    return json.dumps([c.model_dump(mode="json") for c in baseline.conditions], sort_keys=True)


class BaselineCache:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_root() / "baselines.json"

    def _entries(self) -> dict[str, list]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # no cache yet, or a damaged one: the next run measures afresh and rewrites it
        if not isinstance(data, dict):
            return {}
        return {k: v if isinstance(v, list) else [v] for k, v in data.items()}  # an older file kept one per key

    def _valid(self, key: str) -> list[IdleBaseline]:
        out = []
        for entry in self._entries().get(key, []):
            try:
                out.append(IdleBaseline.model_validate(entry))
            except ValidationError:
                continue  # a damaged entry is skipped, the others still count
        return out

    def get(self, config: ExperimentConfig) -> list[IdleBaseline]:
        """Every kept baseline for this backend and these devices, newest first (none unless mode is cached)."""
        if config.energy.baseline.mode != "cached":
            return []
        return sorted(self._valid(_key(config)), key=lambda b: b.measured_at, reverse=True)

    def put(self, config: ExperimentConfig, result: ExperimentResult) -> None:
        """Keep the run's baseline if it was freshly measured, replacing one taken under the same conditions."""
        baseline = result.energy.baseline
        if baseline is None or baseline.source != "fresh":
            return
        key = _key(config)
        kept = [b for b in self._valid(key) if _conditions_key(b) != _conditions_key(baseline)]
        kept = sorted([baseline, *kept], key=lambda b: b.measured_at, reverse=True)[:MAX_PER_KEY]
        entries = self._entries()
        entries[key] = [json.loads(b.model_dump_json()) for b in kept]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(entries, indent=2))
