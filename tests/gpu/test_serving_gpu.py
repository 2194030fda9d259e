"""On a machine with an NVIDIA GPU (`make test-gpu`): a serving run on the PyTorch path with energy per request and
joules per good output token from the NVML counter. Not run on the CPU CI machine."""

from __future__ import annotations

import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult

pytestmark = pytest.mark.gpu


def test_serving_on_the_gpu_attributes_energy_to_requests(tmp_path, tiny_model_path):
    cfg = write_yaml(tmp_path / "g.yaml", f"""\
name: gpu-serving
model: {tiny_model_path}
scenario: serving
device: cuda
max_output_tokens: 64
force_output_length: true
runner: local
energy: {{sampler: nvml, baseline: {{mode: fresh, duration_s: 2}}}}
serving:
  arrival: poisson
  rate: 8
  n_requests: 64
  input_tokens: {{dist: uniform, min: 16, max: 128}}
  slo: {{ttft_ms: 2000, tpot_ms: 200}}
""")
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "out"), timeout=900)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    r = ExperimentResult.model_validate_json((run_dir / "result.json").read_text())
    s = r.serving
    assert r.total_energy_j is not None and r.total_energy_j > 0 and s.energy_unavailable_reason is None
    assert s.energy_per_request is not None and s.energy_per_request.n == 64 and s.energy_per_request.mean_j > 0
    assert s.idle_energy_j is not None and s.idle_energy_j >= 0
    # attribution conserves energy: every request's share plus the idle part is the window's energy
    assert s.energy_per_request.mean_j * 64 + s.idle_energy_j == pytest.approx(r.windows["total"].energy_j, rel=1e-6)
    assert s.n_good is not None and (s.n_good == 0 or s.energy_per_good_token_j > 0)
