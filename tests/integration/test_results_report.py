"""`lem results report` in a real browser: headless Chromium loads the self-contained HTML, with no console error,
and takes a screenshot. Skipped outside CI where Chromium is absent; failed in CI if it is (tests/chromium.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_config, make_result
from lem_runner.energy.device import DeviceSample
from lem_runner.energy.sampler import SampleRow
from lem_runner.energy.timeseries import write_timeseries
from llenergymeasure.render.report import write_report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def gpu_results(tmp_path) -> Path:
    """Two GPU-like runs (energy measured, carbon settings recorded), one with a power timeseries."""
    root = tmp_path / "results"
    for name, tps, batch in (("gpu-a", 10.0, 1), ("gpu-b", 30.0, 4)):
        folder = root / name
        folder.mkdir(parents=True)
        window, energy = 32 / tps, 40.0 / batch
        result = make_result(
            config=make_config(pytorch={"batch_size": batch}, carbon={"grid_intensity_g_per_kwh": 300}),
            experiment_id=name, output_tokens_per_second=tps, inference_time_s=window, total_energy_j=energy,
            energy_per_token_j=energy / 32,
            energy={"source": "nvml_counter", "method": "NVML energy counter",
                    "timeseries_file": "timeseries.parquet" if name == "gpu-a" else None},
            windows={"total": {"start_offset_s": 0.0, "duration_s": window, "output_tokens": 32,
                               "tokens_per_second": tps, "energy_j": energy}})
        (folder / "result.json").write_text(result.model_dump_json())
        if name == "gpu-a":
            rows = [SampleRow(t / 10, "0", None, DeviceSample(power_w=60.0 + (100.0 if 0 <= t <= 30 else 0)))
                    for t in range(-5, 36)]
            write_timeseries(rows, folder / "timeseries.parquet", 0.0)
    return root

def test_report_renders_in_headless_chromium_without_console_errors(gpu_results, tmp_path):
    from chromium import render

    out = write_report(gpu_results, tmp_path / "report.html")
    rendered = render(out, tmp_path)
    assert rendered.console == []
    assert "<svg" in rendered.dom and "Energy per token vs throughput" in rendered.dom
    assert rendered.screenshot.read_bytes()[:8] == PNG and rendered.screenshot.stat().st_size > 20_000


def test_console_errors_are_caught(tmp_path):  # the check above can fail: a page that logs an error is seen
    from chromium import render

    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><p>x</p><script>console.error("boom-from-page")</script>')
    assert any("boom-from-page" in line for line in render(page, tmp_path, 400, 300).console)
