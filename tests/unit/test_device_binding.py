"""The engine runs on exactly the GPUs measured: the runner binds them by UUID before any CUDA initialisation, and
the Docker launcher hands a container the same GPUs the config names (lem_runner.devices, launchers.docker)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import make_config
from fakes import FakeGpuLookup
from lem_runner.contract.protocol import RunRequest
from lem_runner.devices import DeviceError, bind_devices, check_cuda_sees
from llenergymeasure.launchers.docker import container_gpus

HOST = FakeGpuLookup(["GPU-aaaa-0", "GPU-bbbb-1", "GPU-cccc-2", "GPU-dddd-3"])  # NVML index order = PCI bus order


def test_the_engine_sees_only_the_configured_gpu_by_its_uuid():
    """devices: [1] with no CUDA_VISIBLE_DEVICES: before, vLLM ran on GPU 0 while NVML measured GPU 1."""
    b = bind_devices([1], {}, HOST)
    assert b.environment == {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert (b.local_devices, b.uuids) == ([0], ["GPU-bbbb-1"])


def test_devices_are_read_within_the_launching_cuda_visible_devices_in_config_order():
    b = bind_devices([1, 0], {"CUDA_VISIBLE_DEVICES": "2,3"}, HOST)
    assert b.environment["CUDA_VISIBLE_DEVICES"] == "3,2"
    assert b.local_devices == [0, 1] and b.uuids == ["GPU-dddd-3", "GPU-cccc-2"]
    by_uuid = bind_devices([0], {"CUDA_VISIBLE_DEVICES": "GPU-cccc-2"}, HOST)
    assert by_uuid.environment["CUDA_VISIBLE_DEVICES"] == "2"  # vLLM parses the entries as integers


def test_uuids_resolved_by_the_controller_win_over_the_containers_numbering():
    """A container given host GPUs 3 and 1 numbers them 0 (host 1) and 1 (host 3), in PCI order."""
    container = FakeGpuLookup(["GPU-bbbb-1", "GPU-dddd-3"])
    b = bind_devices([0, 1], {}, container, uuids=["GPU-dddd-3", "GPU-bbbb-1"])
    assert b.environment["CUDA_VISIBLE_DEVICES"] == "1,0" and b.uuids == ["GPU-dddd-3", "GPU-bbbb-1"]


@pytest.mark.parametrize(("devices", "environ", "match"), [
    ([4], {}, "GPU 4 is not one NVML sees"),
    ([2], {"CUDA_VISIBLE_DEVICES": "0,1"}, "device 2 is not visible"),
    ([0], {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"}, "CUDA_DEVICE_ORDER=FASTEST_FIRST"),
])
def test_devices_that_cannot_be_bound_are_refused_by_name(devices, environ, match):
    with pytest.raises(DeviceError, match=match):
        bind_devices(devices, environ, HOST)


def test_without_nvml_the_index_is_passed_on_in_pci_bus_order():
    b = bind_devices([1], {}, None)
    assert b.environment == {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"} and b.uuids == [None]


def test_a_cuda_device_other_than_the_nvml_one_refuses_the_run():
    b = bind_devices([1], {}, HOST)
    check_cuda_sees(b, ["bbbb-1"])  # torch reports the UUID without NVML's prefix
    with pytest.raises(DeviceError, match="cuda:0 is GPU aaaa-0, but NVML measures GPU-bbbb-1"):
        check_cuda_sees(b, ["aaaa-0", "bbbb-1"])
    with pytest.raises(DeviceError, match="CUDA sees 0 GPU"):
        check_cuda_sees(b, [])


def test_a_container_gets_the_configured_gpus_and_is_told_their_uuids():
    """Before: DeviceRequest [3, 1] and local devices [0, 1], but the container numbers GPUs 1, 3 as 0, 1 (PCI order):
    config device 3 was measured on host GPU 1."""
    lookup = {str(i): u for i, u in enumerate(HOST.uuids)}.get
    g = container_gpus([3, 1], {}, lookup)
    assert g.device_ids == g.uuids == ["GPU-dddd-3", "GPU-bbbb-1"]
    blind = container_gpus([3, 1], {}, lambda _e: None)
    assert blind.device_ids == ["3", "1"] and blind.uuids is None and blind.local_devices == [1, 0]
    within = container_gpus([0], {"CUDA_VISIBLE_DEVICES": "2,3"}, lambda _e: None)
    assert within.device_ids == ["2"]  # the GPU the lock takes, not host GPU 0


def test_the_runner_refuses_an_invisible_device_before_loading_anything(tmp_path):
    """A real runner process: devices [3] under CUDA_VISIBLE_DEVICES=0,1 fails with one clear line, no model load."""
    config = make_config(device="cuda", devices=[3])
    request = RunRequest(experiment_id="dev", config=config, model_path=str(tmp_path / "no-model"))
    (tmp_path / "request.json").write_text(request.model_dump_json(), encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path), "CUDA_VISIBLE_DEVICES": "0,1"}
    proc = subprocess.run([sys.executable, "-m", "lem_runner", "--config", str(tmp_path / "request.json"), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1
    error = json.loads((tmp_path / "out" / "error.json").read_text())
    assert error["error_type"] == "DeviceError" and error["phase"] == "load"
    assert error["message"].startswith("DeviceError: devices: device 3 is not visible (CUDA_VISIBLE_DEVICES=0,1")


def test_each_devices_energy_is_recorded_beside_its_uuid_and_config_index():
    """Two GPUs drawing 100 W and 300 W through the real CounterEnergySource: the result names each by UUID."""
    from conftest import make_environment
    from fakes import FakeCounterDevice, FakeInferenceBackend
    from lem_runner.energy.tracker import CounterEnergySource
    from lem_runner.measure import run_measurement

    backend = FakeInferenceBackend(batch_size=2, output_tokens=4, step_s=0.25, device_kind="cuda")
    clock = backend.clock
    devs = [FakeCounterDevice(clock, lambda t: 100.0 * t, dev_id="GPU-bbbb-1", uuid="GPU-bbbb-1"),
            FakeCounterDevice(clock, lambda t: 300.0 * t, dev_id="GPU-dddd-3", uuid="GPU-dddd-3")]
    energy = CounterEnergySource(devs, name="fake_counter", method="m", sample_hz=0.0, clock=clock, sleep=clock.sleep)
    config = make_config(backend="vllm", devices=[1, 3], vllm={"tensor_parallel_size": 2}, n_prompts=2,
                         warmup={"n_batches": 0})
    request = RunRequest(experiment_id="uuid", config=config, model_path="/m")
    result = run_measurement(request, backend, lambda _l: energy, lambda _l: make_environment(), lambda _e: None,
                             clock=clock)
    window = result.windows["total"].duration_s  # 0.25 + 3 x 0.25 = 1 s
    got = [(d.index, d.uuid, round(d.energy_j, 6)) for d in result.energy.devices]
    assert got == [(1, "GPU-bbbb-1", round(100.0 * window, 6)), (3, "GPU-dddd-3", round(300.0 * window, 6))]
