"""How CUDA would number the scenario's GPUs for a process, from its environment (CUDA's documented rules).

``CUDA_DEVICE_ORDER``: ``FASTEST_FIRST`` (the default) puts the fastest GPU first — here by ``cuda_speed``, ties
and the rest in PCI order — while ``PCI_BUS_ID`` numbers them as NVML does. ``CUDA_VISIBLE_DEVICES`` then picks and
reorders them: each entry an ordinal in that order or a (prefix of a) GPU UUID; CUDA stops at the first entry that
names no GPU. The simulator stands in for CUDA's own answer where lem asks which GPUs the engine got (torch on a
CPU-only machine has none).
"""

from __future__ import annotations

from collections.abc import Mapping

from lem_runner.simgpu.scenario import DeviceSpec, Scenario


def cuda_order(scenario: Scenario, environ: Mapping[str, str]) -> list[DeviceSpec]:
    """The GPUs as ``cuda:0, cuda:1, ...`` under ``environ``."""
    devices = list(scenario.devices)  # PCI bus order
    if environ.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST") != "PCI_BUS_ID":
        devices.sort(key=lambda d: -d.cuda_speed)  # stable: ties keep PCI order
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return devices
    out: list[DeviceSpec] = []
    for entry in (e.strip() for e in visible.split(",")):
        if entry.isdigit():
            if int(entry) >= len(devices):
                break
            device = devices[int(entry)]
        elif entry.upper().startswith("GPU-"):
            matches = [d for d in devices if d.uuid.lower().startswith(entry.lower())]
            if len(matches) != 1:
                break
            device = matches[0]
        else:
            break
        if device in out:
            break
        out.append(device)
    return out


def cuda_uuids(scenario: Scenario, environ: Mapping[str, str]) -> list[str]:
    """What ``torch.cuda.get_device_properties(i).uuid`` would give for each visible GPU: the UUID without NVML's
    ``GPU-`` prefix."""
    return [d.uuid.removeprefix("GPU-") for d in cuda_order(scenario, environ)]
