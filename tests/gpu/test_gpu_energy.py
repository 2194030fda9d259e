"""On a machine with an NVIDIA GPU: the NVML counter path and the PyTorch backend, for real (`make test-gpu`)."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import run_lem, write_yaml
from device_contract import assert_counter_device_contract
from lem_runner.contract import ExperimentResult
from lem_runner.energy import NvmlEnergySource
from lem_runner.energy.tracker import integrate_power

pytestmark = pytest.mark.gpu


@pytest.fixture
def busy_gpu():
    """A matmul loop keeping GPU 0 busy until the test ends."""
    torch = pytest.importorskip("torch")
    stop = threading.Event()
    a = torch.randn(8192, 8192, device="cuda")

    def spin():
        x = a
        while not stop.is_set():
            x = (x @ a) / x.norm()
        torch.cuda.synchronize()

    t = threading.Thread(target=spin)
    t.start()
    time.sleep(1.5)  # past the one-second averaging of nvmlDeviceGetPowerUsage, should that be the power source
    yield
    stop.set()
    t.join()


def _nvml(sample_hz: float = 10.0) -> NvmlEnergySource:
    nvml = NvmlEnergySource([0], sample_hz=sample_hz)
    assert nvml.is_available(), nvml.unavailable_reason
    return nvml


def test_the_real_gpu_keeps_the_counter_device_contract():
    """The twin of the FakeCounterDevice test: the same assertions against NVML."""
    (dev,) = _nvml().devices
    assert_counter_device_contract(dev, lambda: time.sleep(0.3))
    assert dev.uuid and dev.uuid.startswith("GPU-")
    assert dev.sample().power_w is not None


def test_counter_update_period_and_idle_baseline_are_measured():
    nvml = _nvml()
    nvml.probe()
    assert nvml.update_period_s is not None and 0.0005 < nvml.update_period_s < 1.0
    baseline = nvml.idle_baseline(2.0)
    assert baseline is not None and 5 < baseline.power_w < 1500
    assert baseline.power_std_w is not None and baseline.power_std_w >= 0 and baseline.n_samples >= 15
    assert baseline.device_uuids == nvml.device_uuids()


def test_busy_window_counter_and_integrated_power_agree(busy_gpu):
    nvml = _nvml(sample_hz=10.0)
    nvml.start_tracking()
    time.sleep(4.0)
    reading = nvml.stop_tracking()
    assert reading.total_j is not None and 10 < reading.total_j / reading.duration_s < 1500
    assert len(reading.samples) >= 25
    integrated = integrate_power(reading.samples, "0", reading.t_start, reading.t_end)
    assert integrated is not None and abs(integrated - reading.total_j) / reading.total_j < 0.10
    # the series answers any sub-span, and the halves add up to the whole
    mid = (reading.t_start + reading.t_end) / 2
    halves = reading.energy_between(reading.t_start, mid) + reading.energy_between(mid, reading.t_end)
    assert halves == pytest.approx(reading.total_j, rel=1e-9)
    assert reading.sampler_cpu_s is not None and reading.sampler_cpu_s < 0.1 * reading.duration_s


def test_lem_run_on_gpu_reports_counter_energy_baseline_phases_and_timeseries(tmp_path, tiny_model_path):
    pq = pytest.importorskip("pyarrow.parquet")
    cfg = write_yaml(tmp_path / "gpu.yaml", f"model: {tiny_model_path}\ndevice: cuda\nn_prompts: 64\n"
                                            "max_output_tokens: 64\nforce_output_length: true\n"
                                            "energy: {sampler: nvml, baseline: {mode: fresh, duration_s: 2}}\n"
                                            "pytorch: {batch_size: 16}\n")
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    (exp_dir,) = (tmp_path / "r").iterdir()
    result = ExperimentResult.model_validate_json((exp_dir / "result.json").read_text())
    e = result.energy
    assert e.source == "nvml_counter" and e.selected_because == "energy.sampler: nvml"
    assert result.total_energy_j is not None and result.total_energy_j > 0
    assert result.energy_per_token_j == pytest.approx(result.total_energy_j / result.output_tokens)
    assert e.baseline is not None and e.baseline.source == "fresh" and e.baseline.power_w > 0
    assert result.adjusted_energy_j == pytest.approx(  # signed: a negative value is flagged, not floored
        result.total_energy_j - e.baseline.power_w * result.inference_time_s)
    assert sum(d.energy_j for d in e.devices) == pytest.approx(result.total_energy_j)
    assert e.counter_update_period_ms is not None
    assert result.phases.prefill.energy_j is not None and result.phases.decode.energy_j is not None
    assert result.phases.prefill.energy_share + result.phases.decode.energy_share == pytest.approx(1.0)
    table = pq.read_table(exp_dir / e.timeseries_file)
    assert table.num_rows >= 1 and set(table.column("device").to_pylist()) == {"0"}
    gpu = result.environment.gpus[0]
    assert gpu.uuid and gpu.compute_capability and result.environment.driver_version
    assert result.backend_details["device"] == "cuda:0"


def test_synthetic_weights_build_the_architecture_on_the_gpu(tmp_path, tiny_model_path):
    cfg = write_yaml(tmp_path / "syn.yaml", f"model: {tiny_model_path}\ndevice: cuda\nsynthetic_weights: true\n"
                                            "n_prompts: 8\nmax_output_tokens: 8\nforce_output_length: true\n")
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    (exp_dir,) = (tmp_path / "r").iterdir()
    result = ExperimentResult.model_validate_json((exp_dir / "result.json").read_text())
    assert result.backend_details["synthetic_weights"] is True
    assert result.output_tokens == 64 and result.total_energy_j is not None
    assert "synthetic" in result.flops.parameter_source


def test_a_second_run_reuses_the_cached_idle_baseline(tmp_path, tiny_model_path):
    cfg = write_yaml(tmp_path / "c.yaml", f"model: {tiny_model_path}\ndevice: cuda\nn_prompts: 16\n"
                                          "max_output_tokens: 16\nforce_output_length: true\n"
                                          "energy: {baseline: {mode: cached, duration_s: 1}}\n")
    env = {"LEM_CACHE_DIR": str(tmp_path / "cache")}
    for _ in range(2):
        proc = run_lem("run", str(cfg), "-o", str(tmp_path / "r"), env=env)
        assert proc.returncode == 0, proc.stderr
    first, second = (ExperimentResult.model_validate_json((d / "result.json").read_text())
                     for d in sorted((tmp_path / "r").iterdir()))
    assert first.energy.baseline.source == "fresh" and first.energy.baseline.conditions  # the cache key, recorded
    assert first.energy.baseline.conditions[0].uuid and first.energy.baseline.conditions[0].memory_used_mib
    check = second.energy.baseline.cache_check
    assert check is not None and check.spot_check_w is not None  # same model, same GPU state: spot-checked
    if check.outcome == "reused":
        assert second.energy.baseline.source == "cached"
        assert second.energy.baseline.power_w == first.energy.baseline.power_w
    else:  # idle power drifted past the tolerance (a GPU still warm from the first run): measured afresh
        assert check.outcome == "remeasured" and second.energy.baseline.source == "fresh"
    assert "idle-adjusted" in proc.stdout and "raw" in proc.stdout
