"""The contract between controller and runner: config and result models, the run request and progress events.

This is the only part of the runner the controller may import. It is the bottom layer: it imports nothing else of
lem_runner. The names below are loaded on first use (PEP 562), so that a backend's config section or spec
(backends/<name>/, which import ``lem_runner.contract.section`` and ``.backends``) can be imported on its own: the
experiment model (``contract.config``) is assembled from those sections through the registry, which finds the
backend folders by listing them, not by importing the backends package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the contract module defining it
_EXPORTS: dict[str, str] = {
    "BackendSpec": "backends", "ImageSpec": "backends", "backend_names": "backends", "backend_spec": "backends",
    "registry": "backends",
    "SCHEMA_VERSION": "config", "BaselineConfig": "config", "DecodingConfig": "config", "EnergyConfig": "config",
    "ExperimentConfig": "config", "GpuConfig": "config", "PromptConfig": "config", "SlurmConfig": "config",
    "WarmupConfig": "config", "WindowConfig": "config",
    "BaselineCacheCheck": "energy", "DeviceIdleState": "energy", "EnergyResult": "energy", "IdleBaseline": "energy",
    "engine_identity": "engine", "engine_settings": "engine", "reuse_refusal": "engine",
    "EnvironmentInfo": "environment", "GPUInfo": "environment",
    "contract_fingerprint": "fingerprint", "measurement_config_hash": "fingerprint",
    "GpuSetting": "operating_point", "OperatingPoint": "operating_point",
    "ERROR_FILE": "protocol", "REQUEST_FILE": "protocol", "RESULT_FILE": "protocol", "SESSION_END_FILE": "protocol",
    "ProgressEvent": "protocol", "RunError": "protocol", "RunRequest": "protocol", "parse_event": "protocol",
    "session_request_file": "protocol",
    "EngineUse": "result", "ExperimentResult": "result", "FlopsResult": "result", "LatencyStats": "result",
    "PhaseFigures": "result", "PhaseSplit": "result", "RunTotals": "result", "WarmupResult": "result",
    "WindowFigures": "result",
}

if TYPE_CHECKING:
    from lem_runner.contract.backends import (
        BackendSpec,
        ImageSpec,
        backend_names,
        backend_spec,
        registry,
    )
    from lem_runner.contract.config import (
        SCHEMA_VERSION,
        BaselineConfig,
        DecodingConfig,
        EnergyConfig,
        ExperimentConfig,
        GpuConfig,
        PromptConfig,
        SlurmConfig,
        WarmupConfig,
        WindowConfig,
    )
    from lem_runner.contract.energy import BaselineCacheCheck, DeviceIdleState, EnergyResult, IdleBaseline
    from lem_runner.contract.engine import engine_identity, engine_settings, reuse_refusal
    from lem_runner.contract.environment import EnvironmentInfo, GPUInfo
    from lem_runner.contract.fingerprint import contract_fingerprint, measurement_config_hash
    from lem_runner.contract.operating_point import GpuSetting, OperatingPoint
    from lem_runner.contract.protocol import (
        ERROR_FILE,
        REQUEST_FILE,
        RESULT_FILE,
        SESSION_END_FILE,
        ProgressEvent,
        RunError,
        RunRequest,
        parse_event,
        session_request_file,
    )
    from lem_runner.contract.result import (
        EngineUse,
        ExperimentResult,
        FlopsResult,
        LatencyStats,
        PhaseFigures,
        PhaseSplit,
        RunTotals,
        WarmupResult,
        WindowFigures,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lem_runner.contract' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"lem_runner.contract.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "BackendSpec",
    "ImageSpec",
    "backend_names",
    "backend_spec",
    "registry",
    "SCHEMA_VERSION",
    "BaselineCacheCheck",
    "BaselineConfig",
    "DeviceIdleState",
    "FlopsResult",
    "IdleBaseline",
    "PhaseFigures",
    "PhaseSplit",
    "RunTotals",
    "WarmupResult",
    "WindowConfig",
    "WindowFigures",
    "DecodingConfig",
    "EnergyConfig",
    "EnergyResult",
    "EngineUse",
    "SESSION_END_FILE",
    "engine_identity",
    "engine_settings",
    "reuse_refusal",
    "session_request_file",
    "EnvironmentInfo",
    "ERROR_FILE",
    "ExperimentConfig",
    "ExperimentResult",
    "GPUInfo",
    "GpuConfig",
    "GpuSetting",
    "OperatingPoint",
    "LatencyStats",
    "ProgressEvent",
    "PromptConfig",
    "REQUEST_FILE",
    "RESULT_FILE",
    "RunError",
    "RunRequest",
    "SlurmConfig",
    "WarmupConfig",
    "contract_fingerprint",
    "measurement_config_hash",
    "parse_event",
]
