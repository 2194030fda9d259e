"""On an NVIDIA machine: the engine runs on exactly the GPU measured (the real twins of tests/unit/test_device_binding.py,
which drives lem_runner.devices through FakeGpuLookup)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult
from lem_runner.devices import NvmlLookup, bind_devices, check_cuda_sees

pytestmark = pytest.mark.gpu


def _nvml_uuids() -> list[str]:
    lookup = NvmlLookup.open()
    assert lookup is not None, "NVML is not available"
    import pynvml

    return [lookup.identify(str(i))[1] for i in range(pynvml.nvmlDeviceGetCount())]


def _cuda_uuids(env: dict[str, str]) -> list[str]:
    """What a fresh process's torch numbers cuda:0..n-1 under ``env``."""
    code = ("import json, torch; print(json.dumps([str(torch.cuda.get_device_properties(i).uuid) "
            "for i in range(torch.cuda.device_count())]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cuda_under_pci_bus_order_numbers_gpus_as_nvml_does():
    nvml = _nvml_uuids()
    cuda = _cuda_uuids({"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert [u.lower().removeprefix("gpu-") for u in nvml] == [u.lower() for u in cuda]


def test_a_binding_to_the_last_gpu_is_what_a_fresh_cuda_process_sees():
    nvml = _nvml_uuids()
    last = len(nvml) - 1
    binding = bind_devices([last], {}, NvmlLookup.open())
    assert binding.uuids == [nvml[last]]
    check_cuda_sees(binding, _cuda_uuids(binding.environment))  # raises on a mismatch


def test_lem_run_records_the_uuid_it_bound_the_engine_to_beside_its_energy(tmp_path, tiny_model_path):
    nvml = _nvml_uuids()
    last = len(nvml) - 1
    cfg = write_yaml(tmp_path / "dev.yaml", f"model: {tiny_model_path}\ndevice: cuda\ndevices: [{last}]\n"
                                            "n_prompts: 8\nmax_output_tokens: 16\nenergy: {sampler: nvml}\n")
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "r"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr
    (exp_dir,) = (tmp_path / "r").iterdir()
    result = ExperimentResult.model_validate_json((exp_dir / "result.json").read_text())
    assert result.environment.cuda_visible_devices == str(last)
    assert result.environment.cuda_device_order == "PCI_BUS_ID"
    [dev] = result.energy.devices
    assert (dev.index, dev.uuid) == (last, nvml[last]) and dev.energy_j and dev.energy_j > 0
    assert [g.uuid for g in result.environment.gpus] == [nvml[last]]
