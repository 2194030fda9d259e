"""The environment record: what software and hardware produced a result."""

from __future__ import annotations

import os
import platform
import socket
import sys

from lem_runner import __version__
from lem_runner.contract import nvml
from lem_runner.contract.environment import EnvironmentInfo, GPUInfo, SchedulerAllocation
from lem_runner.contract.nvml import or_none
from lem_runner.energy.nvml import _visible_device_ids


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _gpus(devices: list[int], indices: list[int] | None = None) -> tuple[list[GPUInfo], str | None]:
    """The GPUs this process numbers ``devices`` (through CUDA_VISIBLE_DEVICES, UUIDs once the runner bound them),
    recorded under ``indices`` (the config's numbers) when given."""
    try:
        with nvml.session() as pynvml:
            return _read_gpus(pynvml, devices, indices), or_none(pynvml.nvmlSystemGetDriverVersion)
    except nvml.NvmlUnavailable:  # no NVML here: no GPU record, which the energy section explains
        return [], None


def _read_gpus(pynvml, devices: list[int], indices: list[int] | None) -> list[GPUInfo]:
    gpus: list[GPUInfo] = []
    try:
        entries = _visible_device_ids(devices)
    except ValueError:
        return gpus
    for pos, (idx, entry) in enumerate(zip(devices, entries)):
        try:
            h = nvml.handle(pynvml, entry)
        except pynvml.NVMLError:
            continue
        if indices is not None and pos < len(indices):
            idx = indices[pos]
        gpus.append(
            GPUInfo(
                index=idx,
                name=or_none(pynvml.nvmlDeviceGetName, h) or "unknown",
                uuid=or_none(pynvml.nvmlDeviceGetUUID, h),
                memory_total_mib=or_none(lambda x: pynvml.nvmlDeviceGetMemoryInfo(x).total // 2**20, h),
                power_limit_w=or_none(lambda x: pynvml.nvmlDeviceGetEnforcedPowerLimit(x) / 1000.0, h),
                persistence_mode=or_none(lambda x: bool(pynvml.nvmlDeviceGetPersistenceMode(x)), h),
                compute_capability=or_none(lambda x: ".".join(map(str, pynvml.nvmlDeviceGetCudaComputeCapability(x))), h),
                mig_mode=or_none(lambda x: bool(pynvml.nvmlDeviceGetMigMode(x)[0]), h),
                max_sm_clock_mhz=or_none(pynvml.nvmlDeviceGetMaxClockInfo, h, pynvml.NVML_CLOCK_SM),
                max_memory_clock_mhz=or_none(pynvml.nvmlDeviceGetMaxClockInfo, h, pynvml.NVML_CLOCK_MEM),
                sm_clock_mhz=or_none(pynvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_SM),
                pci_bus_id=or_none(lambda x: nvml.text(pynvml.nvmlDeviceGetPciInfo(x).busId), h),
            )
        )
    return gpus


def _cuda_driver_version() -> str | None:
    try:
        with nvml.session() as pynvml:
            version = pynvml.nvmlSystemGetCudaDriverVersion()
    except Exception:  # no NVML: the GPU section is empty and the energy section says why
        return None
    return f"{version // 1000}.{version % 1000 // 10}"


def _ram_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def _os_release() -> str | None:
    try:
        with open("/etc/os-release", encoding="utf-8") as fh:
            fields = dict(line.rstrip("\n").split("=", 1) for line in fh if "=" in line)
    except OSError:
        return None
    return fields.get("PRETTY_NAME", "").strip('"') or None


def slurm_allocation(env: dict[str, str] | None = None) -> SchedulerAllocation | None:
    """The Slurm job this runner runs in (None outside one): node, job id and the CPUs/GPUs it was given. Inside a
    job, Slurm's allocation is what keeps another job off these GPUs."""
    env = os.environ if env is None else env
    job = env.get("SLURM_JOB_ID")
    if not job:
        return None
    cpus = env.get("SLURM_CPUS_ON_NODE", "")
    return SchedulerAllocation(
        job_id=job, cluster=env.get("SLURM_CLUSTER_NAME"), partition=env.get("SLURM_JOB_PARTITION"),
        node=env.get("SLURMD_NODENAME"), cpus=int(cpus) if cpus.isdigit() else None,
        gpus=env.get("SLURM_JOB_GPUS") or env.get("SLURM_STEP_GPUS"),
        cuda_visible_devices=env.get("CUDA_VISIBLE_DEVICES"),
    )


def collect_environment(
    libraries: dict[str, str], devices: list[int], uses_gpu: bool, cuda_version: str | None, image: str | None,
    indices: list[int] | None = None,
) -> EnvironmentInfo:
    gpus, driver = _gpus(devices, indices) if uses_gpu else ([], None)
    return EnvironmentInfo(
        python=sys.version.split()[0],
        platform=platform.platform(),
        hostname=socket.gethostname(),
        cpu_model=_cpu_model(),
        cpu_count=os.cpu_count(),
        ram_total_gib=_ram_gib(),
        os=_os_release(),
        runner_version=__version__,
        libraries=libraries,
        cuda_version=cuda_version,
        driver_version=driver,
        cuda_driver_version=_cuda_driver_version() if uses_gpu else None,
        gpus=gpus,
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        cuda_device_order=os.environ.get("CUDA_DEVICE_ORDER"),
        in_container=os.path.exists("/.dockerenv") or image is not None,
        image=image,
        allocation=slurm_allocation(),
        simulated_gpu=nvml.simulated() if uses_gpu else None,
    )
