"""The GPUs a run uses, bound by physical identity before any engine or CUDA initialisation.

Why. The config's ``devices`` are GPU indices as NVML and ``nvidia-smi`` number them (PCI bus order), taken within the
launching environment's ``CUDA_VISIBLE_DEVICES`` when that is set (the GPU lock reads them the same way). NVML reads
the energy of exactly those GPUs. CUDA, left alone, numbers GPUs FASTEST_FIRST and every engine picks its own (vLLM
and TensorRT-LLM take the first visible ones), so on a mixed host ``cuda:d`` and NVML index ``d`` can be different
cards, and an engine can run on a GPU other than the one measured. So the runner resolves each configured device to
its NVML index and UUID, and before the engine starts sets ``CUDA_VISIBLE_DEVICES`` to those NVML indices, in config
order, with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (under which CUDA numbers GPUs as NVML does; indices rather than UUIDs
because vLLM parses the entries as integers): every engine (and its worker processes, which inherit the environment)
then sees exactly the measured GPUs as ``cuda:0..n-1``, and NVML opens the same GPUs. Once the engine is loaded, the UUIDs CUDA
reports (torch) are checked against NVML's, and a mismatch refuses the run rather than measure another card.

In a container the controller resolves the UUIDs on the host (``RunRequest.device_uuids``), since the container's
NVML renumbers its GPUs from 0; without them, the container's own numbering is used (``RunRequest.local_devices``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from lem_runner.contract import nvml


class DeviceError(RuntimeError):
    """The configured devices cannot be bound or do not match what CUDA sees: the run is refused."""


class GpuLookup(Protocol):
    """NVML's view of this process's GPUs (NVML ignores CUDA_VISIBLE_DEVICES): the NVML index and UUID of a GPU named
    by its index ("1") or its UUID; LookupError if there is none."""

    def identify(self, entry: str) -> tuple[int, str]: ...


@dataclass(frozen=True)
class DeviceBinding:
    """What the engine process gets: the environment to set, the GPUs it then numbers 0..n-1, and their UUIDs."""

    environment: dict[str, str]
    local_devices: list[int]
    uuids: list[str | None]  # in config order; None where NVML could not tell (no NVML: no GPU energy either)
    entries: list[str]  # what each device was resolved from (an NVML index or a UUID)


def _visible(environ: Mapping[str, str]) -> list[str] | None:
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is None or not value.strip():
        return None
    return [e.strip() for e in value.split(",") if e.strip()]


def bind_devices(devices: Sequence[int], environ: Mapping[str, str], lookup: GpuLookup | None,
                 uuids: Sequence[str] | None = None) -> DeviceBinding:
    """Resolve ``devices`` (or ``uuids``, resolved already by the controller) to physical GPUs and the environment
    that makes the engine run on exactly them. Raises DeviceError naming the device that cannot be had."""
    if uuids:
        entries = list(uuids)
    else:
        visible = _visible(environ)
        order = environ.get("CUDA_DEVICE_ORDER")
        if visible and order not in (None, "", "PCI_BUS_ID") and any(e.isdigit() for e in visible):
            raise DeviceError(
                f"devices: CUDA_DEVICE_ORDER={order} numbers the GPUs in CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']} "
                "differently from NVML, so the GPU measured could differ from the one used; unset CUDA_DEVICE_ORDER "
                "(lem uses PCI_BUS_ID, as nvidia-smi numbers GPUs) or list GPU UUIDs in CUDA_VISIBLE_DEVICES")
        entries = []
        for d in devices:
            if visible is not None and d >= len(visible):
                raise DeviceError(f"devices: device {d} is not visible (CUDA_VISIBLE_DEVICES="
                                  f"{environ['CUDA_VISIBLE_DEVICES']} lists {len(visible)})")
            entries.append(visible[d] if visible is not None else str(d))
    resolved: list[str | None] = []
    selectors: list[str] = []
    for entry in entries:
        if lookup is None:
            resolved.append(entry if not entry.isdigit() else None)
            selectors.append(entry)
            continue
        try:
            index, uuid = lookup.identify(entry)
        except LookupError as exc:
            raise DeviceError(f"devices: GPU {entry} is not one NVML sees here ({exc})") from None
        resolved.append(uuid)
        # NVML's index, not the UUID: under PCI_BUS_ID CUDA numbers GPUs as NVML does, and vLLM parses
        # CUDA_VISIBLE_DEVICES entries as integers (Platform.device_id_to_physical_device_id); MIG ids stay as given
        selectors.append(entry if entry.upper().startswith("MIG-") else str(index))
    return DeviceBinding(
        environment={"CUDA_VISIBLE_DEVICES": ",".join(selectors), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
        local_devices=list(range(len(entries))),
        uuids=resolved,
        entries=entries,
    )


def _bare(uuid: str) -> str:
    """A UUID without NVML's ``GPU-`` prefix (torch reports it bare), lower-case."""
    return uuid.lower().removeprefix("gpu-")


def check_cuda_sees(binding: DeviceBinding, cuda_uuids: Sequence[str]) -> None:
    """Refuse when the GPUs CUDA numbers 0..n-1 are not, in order, the UUIDs NVML resolved (MIG instances and GPUs
    NVML could not name are not compared)."""
    expected = binding.uuids
    if len(cuda_uuids) < len(expected):
        raise DeviceError(f"devices: CUDA sees {len(cuda_uuids)} GPU(s) with CUDA_VISIBLE_DEVICES="
                          f"{binding.environment['CUDA_VISIBLE_DEVICES']}, the run needs {len(expected)}")
    for i, (want, seen) in enumerate(zip(expected, cuda_uuids)):
        if want is None or want.upper().startswith("MIG-"):
            continue
        if _bare(want) != _bare(seen):
            raise DeviceError(f"devices: cuda:{i} is GPU {seen}, but NVML measures {want} for it; the engine would "
                              "run on a GPU other than the one measured")


class NvmlLookup:
    """GpuLookup through the NVML access module (``None`` from ``open`` when NVML is not there)."""

    def __init__(self, pynvml) -> None:
        self._nvml = pynvml

    @classmethod
    def open(cls) -> NvmlLookup | None:
        try:
            return cls(nvml.init())
        except nvml.NvmlUnavailable:  # no library or no driver: no GPU to bind (and no NVML energy)
            return None

    def identify(self, entry: str) -> tuple[int, str]:
        try:
            return nvml.identify(self._nvml, entry)
        except self._nvml.NVMLError as exc:
            raise LookupError(str(exc)) from None


def torch_cuda_uuids() -> list[str]:
    """The UUIDs of the GPUs this process's CUDA numbers 0..n-1 (torch); on the simulated device, the ones CUDA would
    number so under this process's CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER (lem_runner.simgpu.cuda)."""
    scenario = nvml.simulated()
    if scenario is not None:
        import os

        from lem_runner.simgpu.cuda import cuda_uuids
        from lem_runner.simgpu.scenario import load_scenario

        return cuda_uuids(load_scenario(scenario), os.environ)
    import torch

    return [str(torch.cuda.get_device_properties(i).uuid) for i in range(torch.cuda.device_count())]
