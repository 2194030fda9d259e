"""Hashes that tie numbers to configs and images to the contract they were built for."""

from __future__ import annotations

import hashlib
import json

from lem_runner.contract.config import SCHEMA_VERSION, ExperimentConfig

#: Fields that name or place an experiment but do not change what is measured (quality: its figures are taken after
#: the energy window, so adding one leaves the measurement, and its hash, as it was).
_NOT_MEASURED = {"name", "runner", "allow_model_download", "carbon", "slurm", "quality"}


def _digest(obj: object) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def measurement_config_hash(config: ExperimentConfig) -> str:
    """16 hex chars of SHA-256 over the canonical JSON of everything that affects the measurement."""
    return _digest(config.model_dump(mode="json", exclude=_NOT_MEASURED))


def contract_fingerprint() -> str:
    """16 hex chars identifying the contract: schema version plus the JSON Schemas of request, result and events.

    Images carry it as a label; the controller refuses an image whose fingerprint differs from its own.
    """
    from lem_runner.contract.protocol import ProgressEvent, RunError, RunRequest
    from lem_runner.contract.result import ExperimentResult

    schemas = {m.__name__: m.model_json_schema() for m in (RunRequest, ExperimentResult, ProgressEvent, RunError)}
    return _digest({"schema_version": SCHEMA_VERSION, "schemas": schemas})
