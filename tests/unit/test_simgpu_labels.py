"""A run on the simulated GPU is never mistaken for a measurement: the report names it (the run summary, doctor and
the result's own labels are checked in tests/integration/test_simulated_gpu.py)."""

from __future__ import annotations

from conftest import make_result
from llenergymeasure.render.report import build_report


def test_the_report_says_which_runs_took_their_energy_from_the_simulated_gpu(tmp_path):
    for name, source in (("real", "nvml_counter"), ("sim", "simgpu_nvml_counter")):
        folder = tmp_path / name
        folder.mkdir()
        result = make_result(experiment_id=name, total_energy_j=40.0, energy_per_token_j=40.0 / 32,
                             energy={"source": source, "method": "counter"},
                             quality_flags=["simulated_device"] if source.startswith("simgpu") else [])
        (folder / "result.json").write_text(result.model_dump_json())
    html = build_report(tmp_path)
    assert "SIMULATED GPU: 1 of 2 runs" in html and "quality flag simulated_device" in html
