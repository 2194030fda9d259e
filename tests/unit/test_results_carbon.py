"""Emissions from measured energy: grid intensity x PUE x kWh, checked against hand computation, null when energy is
null (never from TDP), the inputs recorded beside the figure in the export, `show` and `--grid-intensity`."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_config, make_result
from lem_runner.contract.config import CarbonConfig
from lem_runner.contract.fingerprint import measurement_config_hash
from llenergymeasure.errors import ConfigError
from llenergymeasure.render.experiment import render_experiment
from llenergymeasure.results.carbon import carbon_option, emissions_g, result_emissions_g, with_carbon
from llenergymeasure.results.discover import find_experiments
from llenergymeasure.results.frame import results_frame
from rich.console import Console

CARBON = {"grid_intensity_g_per_kwh": 400, "pue": 1.2}


def _gpu(energy_j: float | None = 3.6e6, carbon: dict | None = CARBON, **kw):
    return make_result(config=make_config(carbon=carbon) if carbon else make_config(), total_energy_j=energy_j,
                       energy_per_token_j=None if energy_j is None else energy_j / 32,
                       energy={"source": "nvml_counter", "method": "NVML energy counter"}
                       if energy_j is not None else None, **kw) if energy_j is not None else \
        make_result(config=make_config(carbon=carbon) if carbon else make_config(), **kw)


def _write(folder: Path, result) -> Path:
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(result.model_dump_json())
    return folder


def test_one_kwh_at_400_g_with_pue_1_2_is_480_g():
    c = CarbonConfig(**CARBON)
    assert emissions_g(3.6e6, c) == pytest.approx(480.0)
    assert emissions_g(1800.0, CarbonConfig(grid_intensity_g_per_kwh=100)) == pytest.approx(0.05)  # 0.5 Wh, PUE 1
    assert emissions_g(None, c) is None and emissions_g(3.6e6, None) is None
    assert result_emissions_g(_gpu()) == pytest.approx(480.0)
    assert result_emissions_g(_gpu(energy_j=None)) is None  # CPU run: energy null -> emissions null, never guessed


def test_carbon_settings_do_not_change_the_measurement_hash():
    assert measurement_config_hash(make_config(carbon=CARBON)) == measurement_config_hash(make_config())


def test_export_records_the_inputs_beside_the_figure(tmp_path):
    _write(tmp_path / "r" / "gpu", _gpu(experiment_id="gpu"))
    _write(tmp_path / "r" / "cpu", _gpu(energy_j=None, experiment_id="cpu"))
    _write(tmp_path / "r" / "plain", _gpu(carbon=None, experiment_id="plain"))
    frame = results_frame(find_experiments(tmp_path / "r")).set_index("experiment_id")
    assert frame.loc["gpu", "emissions_g"] == pytest.approx(480.0)
    assert frame.loc["gpu", "emissions_per_token_g"] == pytest.approx(15.0)
    assert frame.loc["gpu", "grid_intensity_g_per_kwh"] == 400 and frame.loc["gpu", "pue"] == 1.2
    assert frame["emissions_g"].isna()[["cpu", "plain"]].all()
    assert frame.loc["cpu", "grid_intensity_g_per_kwh"] == 400  # inputs recorded even where energy is null


def test_flag_replaces_recorded_settings_and_bad_flags_are_one_line(tmp_path):
    _write(tmp_path / "r" / "plain", _gpu(carbon=None, experiment_id="plain"))
    (e,) = with_carbon(find_experiments(tmp_path / "r"), carbon_option(200.0, None))
    assert result_emissions_g(e.result) == pytest.approx(200.0)
    with pytest.raises(ConfigError, match="--grid-intensity"):
        carbon_option(-1.0, None)
    with pytest.raises(ConfigError, match="--pue"):
        carbon_option(400.0, 0.5)
    with pytest.raises(ConfigError, match="--pue: give --grid-intensity too"):
        carbon_option(None, 1.2)


def test_show_reads_emissions_and_missing_figures_in_words(tmp_path):
    gpu = find_experiments(_write(tmp_path / "gpu", _gpu(experiment_id="gpu")))[0]
    console = Console(width=200, record=True)
    render_experiment(console, gpu)
    text = console.export_text()
    assert "480 g CO2e" in text and "1 kWh × 400 gCO2e/kWh × PUE 1.2" in text
    assert "not measured (no idle baseline)" in text
    cpu = find_experiments(_write(tmp_path / "cpu", _gpu(energy_j=None, experiment_id="cpu")))[0]
    console = Console(width=200, record=True)
    render_experiment(console, cpu)
    text = console.export_text()
    assert "null · null" not in text
    assert "not measured (energy not measured)" in text
    assert "not measured (energy is null: run is on CPU: NVML covers GPUs only)" in text


def test_emissions_say_what_energy_they_cover_gpu_only_or_the_cpu_package(tmp_path):
    # a RAPL run measured by the runner records its scope in result.json; an NVML result from before the field gets
    # it from its source. Either way the export carries it beside emissions_g, and neither claims host DRAM or the
    # rest of the server.
    from conftest import make_environment
    from fakes import FakeCounterDevice, FakeInferenceBackend
    from lem_runner.contract import RunRequest
    from lem_runner.energy.rapl import RaplEnergySource
    from lem_runner.measure import run_measurement
    from llenergymeasure.results.columns import flatten
    from llenergymeasure.results.discover import Experiment

    backend = FakeInferenceBackend(batch_size=2, output_tokens=4, step_s=0.25)
    package = FakeCounterDevice(backend.clock, lambda t: 50.0 * t, dev_id="cpu:package-0", uuid=None,
                                update_period_s=0.001, reports_power=False)
    rapl = RaplEnergySource([package], sample_hz=0.0)
    request = RunRequest(experiment_id="cpu", config=make_config(carbon=CARBON, energy={"sample_hz": 0}),
                         model_path="/m")
    cpu = run_measurement(request, backend, lambda _l: rapl, lambda _l: make_environment(), lambda _e: None,
                          clock=backend.clock)
    assert cpu.energy.source == "rapl" and cpu.energy.scope.startswith("CPU package(s) only")
    assert "not host DRAM" in cpu.energy.scope
    gpu = _gpu()
    assert gpu.energy.scope is None  # written before the field
    rows = {r.energy.source: flatten(Experiment(tmp_path, r, config=r.config)) for r in (cpu, gpu)}
    assert rows["rapl"]["energy_scope"] == cpu.energy.scope and rows["rapl"]["emissions_g"] is not None
    assert rows["nvml_counter"]["energy_scope"].startswith("GPU only")
    assert "host DRAM" in rows["nvml_counter"]["energy_scope"] and rows["nvml_counter"]["emissions_g"] == pytest.approx(480)
