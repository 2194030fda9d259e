"""On a machine with an NVIDIA GPU: the NVML counter path and the PyTorch backend, for real (`make test-gpu`)."""

from __future__ import annotations

import time

import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult
from lem_runner.energy import NvmlEnergyBackend

pytestmark = pytest.mark.gpu


def test_nvml_counter_reads_positive_energy_over_a_busy_window():
    torch = pytest.importorskip("torch")
    nvml = NvmlEnergyBackend([0])
    assert nvml.is_available(), nvml.unavailable_reason
    a = torch.randn(8192, 8192, device="cuda")
    nvml.start_tracking()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        a = a @ a
        a = a / a.norm()
    torch.cuda.synchronize()
    reading = nvml.stop_tracking()
    assert reading.total_j is not None and reading.total_j > 0
    # a busy H100-class GPU draws tens to hundreds of watts: the average power must be physically plausible
    watts = reading.total_j / reading.duration_s
    assert 10 < watts < 1500, watts


def test_lem_run_on_gpu_reports_counter_energy(tmp_path, tiny_model_path):
    cfg = write_yaml(tmp_path / "gpu.yaml", f"model: {tiny_model_path}\ndevice: cuda\nn_prompts: 64\n"
                                            "max_output_tokens: 64\nforce_output_length: true\n"
                                            "energy: {{sampler: nvml}}\npytorch: {{batch_size: 16}}\n")
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    (exp_dir,) = (tmp_path / "r").iterdir()
    result = ExperimentResult.model_validate_json((exp_dir / "result.json").read_text())
    assert result.energy.sampler == "nvml_counter"
    assert result.total_energy_j is not None and result.total_energy_j > 0
    assert result.avg_energy_per_token_j == pytest.approx(result.total_energy_j / result.output_tokens)
    assert result.environment.gpus and result.environment.driver_version
    assert result.backend_details["device"] == "cuda:0"

