"""Choosing the energy source where NVML answers (the simulated GPU, in this process): the NVML counter of exactly
the config's devices at the config's sampling rate, named and explained, for `auto` and for `energy.sampler: nvml`
on a CUDA run and on the simulator's CPU-compute run; RAPL at the config's rate. `make mutate` found this choice
unguarded wherever NVML was needed (CI had none)."""

from __future__ import annotations

import pytest
from conftest import make_config
from lem_runner.contract import nvml
from lem_runner.energy.nvml import NvmlEnergySource
from lem_runner.energy.rapl import RaplEnergySource
from lem_runner.energy.select import select_energy_source
from simgpu import UUIDS, sim_env, three_gpus, write_scenario
from test_energy import _powercap


@pytest.fixture
def sim(tmp_path, monkeypatch):
    for k, v in sim_env(write_scenario(tmp_path / "sim", three_gpus())).items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.mark.parametrize("kind, because", [
    ("cuda", "auto: the run is on NVIDIA GPUs and their NVML energy counters are readable"),
    ("cpu", f"auto: SIMULATED GPUs ({nvml.SIMULATED_ENV}) stand in for the GPUs; compute runs on cpu"),
])
def test_auto_picks_the_nvml_counter_of_the_configs_devices_at_its_rate(sim, kind, because):
    source = select_energy_source(make_config(devices=[2], energy={"sample_hz": 25.0}), kind)
    assert isinstance(source, NvmlEnergySource) and source.selected_because == because
    assert source.name == nvml.SIMULATED_SOURCE and source.sample_hz == 25.0
    assert [d.uuid for d in source.devices] == [UUIDS[2]]


def test_the_nvml_sampler_named_in_the_config_is_that_counter(sim):
    source = select_energy_source(make_config(devices=[1], energy={"sampler": "nvml", "sample_hz": 20.0}), "cuda")
    assert isinstance(source, NvmlEnergySource) and source.selected_because == "energy.sampler: nvml"
    assert source.sample_hz == 20.0 and [d.uuid for d in source.devices] == [UUIDS[1]]


def test_auto_with_an_invisible_device_measures_nothing_and_says_why(sim):
    source = select_energy_source(make_config(devices=[4]), "cuda")
    assert not isinstance(source, NvmlEnergySource)
    assert source.reason.startswith("NVML energy counter not readable: ")


def test_a_cpu_config_on_the_simulated_host_is_not_measured_on_the_gpus(sim, tmp_path):
    source = select_energy_source(make_config(device="cpu", energy={"sample_hz": 30.0}), "cpu",
                                  powercap=_powercap(tmp_path / "pc"))
    assert isinstance(source, RaplEnergySource) and source.sample_hz == 30.0
    named = select_energy_source(make_config(device="cpu", energy={"sampler": "rapl", "sample_hz": 15.0}), "cpu",
                                 powercap=_powercap(tmp_path / "pc2"))
    assert isinstance(named, RaplEnergySource) and named.sample_hz == 15.0
    assert named.selected_because == "energy.sampler: rapl (CPU packages only)"
    assert [d.id for d in named.devices] == ["cpu:package-0"]
