"""The contract between controller and runner: config and result models, the run request and progress events.

This is the only part of the runner the controller may import.
"""

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
