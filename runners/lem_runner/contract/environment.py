"""The environment record of a result: the software and hardware that produced the numbers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GPUInfo(_Record):
    index: int
    name: str
    uuid: str | None = None
    memory_total_mib: int | None = None
    power_limit_w: float | None = None
    persistence_mode: bool | None = None
    compute_capability: str | None = None
    mig_mode: bool | None = None
    max_sm_clock_mhz: int | None = None
    max_memory_clock_mhz: int | None = None
    sm_clock_mhz: int | None = Field(None, description="SM clock when the environment was recorded")
    pci_bus_id: str | None = None


class SchedulerAllocation(_Record):
    """What a batch scheduler (Slurm) gave the run, read from the job's SLURM_* variables on the node."""

    scheduler: Literal["slurm"] = "slurm"
    job_id: str
    cluster: str | None = None
    partition: str | None = None
    node: str | None = Field(None, description="the node the job ran on (SLURMD_NODENAME)")
    cpus: int | None = Field(None, description="CPUs allocated on the node (SLURM_CPUS_ON_NODE)")
    gpus: str | None = Field(None, description="GPU indices Slurm allocated on the node (SLURM_JOB_GPUS)")
    cuda_visible_devices: str | None = Field(None, description="CUDA_VISIBLE_DEVICES as Slurm set it for the job")


class EnvironmentInfo(_Record):
    """What produced the numbers: software versions and hardware."""

    python: str
    platform: str
    hostname: str
    cpu_model: str | None = None
    cpu_count: int | None = None
    ram_total_gib: float | None = None
    os: str | None = None
    runner_version: str
    libraries: dict[str, str] = Field(default_factory=dict, description="versions of the backend's libraries")
    cuda_version: str | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = Field(None, description="CUDA version the driver supports")
    gpus: list[GPUInfo] = Field(default_factory=list)
    cuda_visible_devices: str | None = Field(
        None, description="CUDA_VISIBLE_DEVICES the engine ran under: the runner sets it to the measured GPUs' NVML "
                          "indices, in config order, before any CUDA initialisation")
    cuda_device_order: str | None = Field(None, description="CUDA_DEVICE_ORDER the engine ran under (PCI_BUS_ID)")
    in_container: bool = False
    image: str | None = Field(None, description="image id when the runner ran in a container")
    allocation: SchedulerAllocation | None = Field(None, description="the Slurm job's allocation, when run as one")
    simulated_gpu: str | None = Field(
        None, description="the simulated-GPU scenario (LEM_SIMULATED_GPU) the GPUs above and their energy came from: "
                          "lem's simulated NVML driver, not hardware; null on real GPUs")
