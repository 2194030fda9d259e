"""The device binding's edges that `make mutate` found unguarded (docs/mutation.md): a CUDA_DEVICE_ORDER that already
numbers GPUs as NVML does, MIG instances, several devices without NVML, and the refusal lines a user reads. A
binding mistake measures one GPU while the engine runs on another, so none of these survivors is harmless."""

from __future__ import annotations

import pytest
from fakes import FakeGpuLookup
from lem_runner.devices import DeviceError, bind_devices, check_cuda_sees

HOST = FakeGpuLookup(["GPU-aaaa-0", "GPU-bbbb-1", "GPU-cccc-2", "GPU-dddd-3"])


@pytest.mark.parametrize("order", ["", "PCI_BUS_ID"])
def test_a_cuda_device_order_that_numbers_gpus_as_nvml_does_is_accepted(order):
    b = bind_devices([0], {"CUDA_VISIBLE_DEVICES": "2", "CUDA_DEVICE_ORDER": order}, HOST)
    assert b.environment == {"CUDA_VISIBLE_DEVICES": "2", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert b.uuids == ["GPU-cccc-2"] and b.entries == ["2"]


def test_fastest_first_under_indices_is_refused_with_the_whole_reason():
    with pytest.raises(DeviceError) as info:
        bind_devices([0], {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"}, HOST)
    assert str(info.value) == (
        "devices: CUDA_DEVICE_ORDER=FASTEST_FIRST numbers the GPUs in CUDA_VISIBLE_DEVICES=1 differently from NVML, so "
        "the GPU measured could differ from the one used; unset CUDA_DEVICE_ORDER (lem uses PCI_BUS_ID, as nvidia-smi "
        "numbers GPUs) or list GPU UUIDs in CUDA_VISIBLE_DEVICES")


@pytest.mark.parametrize("mig", ["MIG-eeee-5", "mig-eeee-5"])
def test_a_mig_instance_is_passed_on_by_its_id_and_not_compared_with_cudas_uuid(mig):
    lookup = FakeGpuLookup([*HOST.uuids, mig])
    b = bind_devices([0, 1], {"CUDA_VISIBLE_DEVICES": f"{mig},GPU-bbbb-1"}, lookup)
    assert b.environment["CUDA_VISIBLE_DEVICES"] == f"{mig},1"  # the MIG id as given, the GPU by NVML index
    assert b.uuids == [mig, "GPU-bbbb-1"] and b.entries == [mig, "GPU-bbbb-1"]
    check_cuda_sees(b, ["whatever-cuda-calls-it", "bbbb-1"])  # the MIG entry is skipped, the GPU after it checked
    with pytest.raises(DeviceError, match="cuda:1 is GPU aaaa-0, but NVML measures GPU-bbbb-1"):
        check_cuda_sees(b, ["whatever-cuda-calls-it", "aaaa-0"])


def test_without_nvml_every_device_is_passed_on_and_uuids_kept_as_given():
    b = bind_devices([0, 1], {}, None)
    assert b.environment["CUDA_VISIBLE_DEVICES"] == "0,1" and b.uuids == [None, None] and b.local_devices == [0, 1]
    check_cuda_sees(b, ["aaaa-0", "bbbb-1"])  # GPUs NVML could not name are not compared
    named = bind_devices([0], {"CUDA_VISIBLE_DEVICES": "GPU-cccc-2"}, None)
    assert named.uuids == ["GPU-cccc-2"] and named.environment["CUDA_VISIBLE_DEVICES"] == "GPU-cccc-2"


def test_a_cuda_gpu_other_than_the_measured_one_is_refused_with_the_whole_reason():
    b = bind_devices([1], {}, HOST)
    with pytest.raises(DeviceError) as info:
        check_cuda_sees(b, ["aaaa-0"])
    assert str(info.value) == ("devices: cuda:0 is GPU aaaa-0, but NVML measures GPU-bbbb-1 for it; the engine would "
                               "run on a GPU other than the one measured")


def test_the_real_nvml_lookup_binds_by_pci_order_and_cuda_then_sees_the_same_gpus(tmp_path, monkeypatch):
    """On the simulated host (tests/simgpu.py: NVML numbers A, B, C; CUDA's FASTEST_FIRST numbers C, A, B), device 1
    is B: the binding names NVML index 1, and CUDA under that binding sees B — while CUDA left alone calls C cuda:0."""
    from lem_runner.devices import NvmlLookup, torch_cuda_uuids
    from simgpu import UUIDS, sim_env, three_gpus, write_scenario

    for k, v in sim_env(write_scenario(tmp_path / "sim", three_gpus())).items():
        monkeypatch.setenv(k, v)
    for var in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        monkeypatch.delenv(var, raising=False)
    lookup = NvmlLookup.open()
    assert lookup is not None
    assert lookup.identify("1") == (1, UUIDS[1]) and lookup.identify(UUIDS[2]) == (2, UUIDS[2])
    with pytest.raises(LookupError):
        lookup.identify("7")
    assert torch_cuda_uuids()[0] == UUIDS[2].removeprefix("GPU-")  # unbound, cuda:0 is the fastest card, C
    b = bind_devices([1], {}, lookup)
    assert b.environment == {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"} and b.uuids == [UUIDS[1]]
    for k, v in b.environment.items():
        monkeypatch.setenv(k, v)
    check_cuda_sees(b, torch_cuda_uuids())  # the engine's cuda:0 is the measured GPU
