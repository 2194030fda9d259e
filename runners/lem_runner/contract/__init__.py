"""The contract between controller and runner: config and result models, the run request and progress events.

This is the only part of the runner the controller may import.
"""

from lem_runner.contract.config import (
    SCHEMA_VERSION,
    BaselineConfig,
    DecodingConfig,
    EnergyConfig,
    ExperimentConfig,
    PromptConfig,
    PyTorchConfig,
    SlurmConfig,
    TensorRTConfig,
    VLLMConfig,
    WarmupConfig,
    WindowConfig,
)
from lem_runner.contract.fingerprint import contract_fingerprint, measurement_config_hash
from lem_runner.contract.protocol import (
    ERROR_FILE,
    REQUEST_FILE,
    RESULT_FILE,
    ProgressEvent,
    RunError,
    RunRequest,
    parse_event,
)
from lem_runner.contract.result import (
    EnergyResult,
    EnvironmentInfo,
    ExperimentResult,
    FlopsResult,
    GPUInfo,
    IdleBaseline,
    LatencyStats,
    PhaseFigures,
    PhaseSplit,
    WarmupResult,
    WindowFigures,
)

__all__ = [
    "SCHEMA_VERSION",
    "BaselineConfig",
    "FlopsResult",
    "IdleBaseline",
    "PhaseFigures",
    "PhaseSplit",
    "WarmupResult",
    "WindowConfig",
    "WindowFigures",
    "DecodingConfig",
    "EnergyConfig",
    "EnergyResult",
    "EnvironmentInfo",
    "ERROR_FILE",
    "ExperimentConfig",
    "ExperimentResult",
    "GPUInfo",
    "LatencyStats",
    "ProgressEvent",
    "PromptConfig",
    "PyTorchConfig",
    "REQUEST_FILE",
    "RESULT_FILE",
    "RunError",
    "RunRequest",
    "SlurmConfig",
    "TensorRTConfig",
    "VLLMConfig",
    "WarmupConfig",
    "contract_fingerprint",
    "measurement_config_hash",
    "parse_event",
]
