"""Energy sources: the null source, source selection, the real NVML counter, and FakeEnergySource as its twin."""

from __future__ import annotations

import os
import time

import pytest
from conftest import make_config
from fakes import FakeClock, FakeEnergySource
from lem_runner.energy import (
    EnergyReading,
    EnergySource,
    EnergyUnavailable,
    NullEnergySource,
    NvmlEnergySource,
    select_energy_source,
)
from lem_runner.energy.nvml import _visible_device_ids


def _energy_sources():
    """Every energy source the runner can get: the fakes, the null source, and whatever this machine selects."""
    return [
        pytest.param(lambda: FakeEnergySource(joules=12.5), id="fake-measured"),
        pytest.param(lambda: FakeEnergySource(joules=None, reason="no counter"), id="fake-null"),
        pytest.param(lambda: NullEnergySource("no counter here"), id="null"),
        pytest.param(lambda: select_energy_source(make_config(device="cuda"), "cuda"), id="selected-for-cuda"),
    ]


@pytest.mark.parametrize("factory", _energy_sources())
def test_every_source_keeps_the_energy_protocol(factory):
    """The contract FakeEnergySource must share with the real sources: null always comes with a reason, never 0."""
    source = factory()
    assert isinstance(source, EnergySource)
    assert isinstance(source.name, str) and source.name
    available = source.is_available()
    source.start_tracking()
    if isinstance(source, NvmlEnergySource):  # a real counter needs a moment to tick
        time.sleep(0.05)
    reading = source.stop_tracking()
    assert isinstance(reading, EnergyReading)
    assert reading.source == source.name
    assert reading.duration_s >= 0
    if reading.total_j is None:
        assert reading.unavailable_reason and reading.per_device_j is None
        assert not available
    else:
        assert available and reading.unavailable_reason is None
        assert reading.total_j >= 0
        assert sum(reading.per_device_j.values()) == pytest.approx(reading.total_j)


def test_null_source_returns_none_with_its_reason():
    source = NullEnergySource("because")
    assert source.is_available() is False
    source.start_tracking()
    reading = source.stop_tracking()
    assert (reading.source, reading.total_j, reading.per_device_j) == ("none", None, None)
    assert reading.unavailable_reason == "because"
    assert reading.method == "not measured"


def test_cpu_runs_get_a_null_source_saying_why():
    source = select_energy_source(make_config(), "cpu")
    assert isinstance(source, NullEnergySource)
    assert source.reason.startswith("run is on CPU")
    assert "NVML covers GPUs only" in source.reason


@pytest.mark.parametrize("device_kind", ["cpu", "cuda"])
def test_disabled_sampler_gives_a_null_source_whatever_the_device(device_kind):
    source = select_energy_source(make_config(energy={"sampler": "none"}), device_kind)
    assert isinstance(source, NullEnergySource)
    assert "energy.sampler: none" in source.reason


def test_real_nvml_counter_on_this_machine():
    """Twin of FakeEnergySource: passes with or without a GPU, checking whichever behaviour this machine has."""
    nvml = NvmlEnergySource([0])
    if nvml.is_available():
        assert nvml.unavailable_reason is None
        nvml.start_tracking()
        time.sleep(0.2)
        reading = nvml.stop_tracking()
        assert reading.source == "nvml_counter"
        assert reading.total_j is not None and reading.total_j >= 0
        assert isinstance(reading.per_device_j, dict) and set(reading.per_device_j) == {"0"}
        assert isinstance(select_energy_source(make_config(device="cuda"), "cuda"), NvmlEnergySource)
    else:
        assert "NVML" in nvml.unavailable_reason
        with pytest.raises(RuntimeError, match="NVML"):
            nvml.start_tracking()
        selected = select_energy_source(make_config(device="cuda"), "cuda")
        assert isinstance(selected, NullEnergySource)
        assert "NVML" in selected.reason
        selected.start_tracking()
        assert selected.stop_tracking().total_j is None


def test_fake_reports_its_configured_joules_and_counts_calls():
    clock = FakeClock(10.0)
    fake = FakeEnergySource(joules=40.0, clock=clock, warnings=["coarse"])
    assert fake.is_available()
    fake.start_tracking()
    clock.advance(2.5)
    reading = fake.stop_tracking()
    assert (reading.total_j, reading.per_device_j, reading.duration_s) == (40.0, {"0": 40.0}, 2.5)
    assert reading.warnings == ["coarse"]
    assert (fake.start_calls, fake.stop_calls) == (1, 1)


def test_fake_without_joules_carries_the_reason():
    fake = FakeEnergySource(joules=None, reason="counter missing")
    assert not fake.is_available()
    fake.start_tracking()
    reading = fake.stop_tracking()
    assert reading.total_j is None and reading.unavailable_reason == "counter missing"


def test_fake_refuses_stop_before_start_and_a_second_stop():
    fake = FakeEnergySource()
    with pytest.raises(RuntimeError, match="before start_tracking"):
        fake.stop_tracking()
    fake.start_tracking()
    fake.stop_tracking()
    with pytest.raises(RuntimeError):
        fake.stop_tracking()
    assert fake.stop_calls == 1


def test_fake_needs_a_reason_when_it_has_no_figure():
    with pytest.raises(ValueError):
        FakeEnergySource(joules=None)


def test_visible_devices_map_cuda_ordinals_to_nvml_ids(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert _visible_device_ids([0, 2]) == ["0", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 1")
    assert _visible_device_ids([0, 1]) == ["3", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa,GPU-bbbb")
    assert _visible_device_ids([1]) == ["GPU-bbbb"]
    with pytest.raises(ValueError, match="not visible"):
        _visible_device_ids([2])


# --- choosing a source: RAPL through a powercap tree, explicit samplers ----------------------------------------------


def _powercap(root, energy_uj="123456789", readable=True):
    zone = root / "intel-rapl:0"
    (zone / "intel-rapl:0:0").mkdir(parents=True)  # a sub-zone (core): not a package, not counted
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    energy = zone / "energy_uj"
    if readable:
        energy.write_text(energy_uj + "\n")
    elif os.geteuid() == 0:
        energy.mkdir()  # root reads any file: a counter that cannot be read as a number stands in
    else:
        energy.write_text(energy_uj + "\n")
        energy.chmod(0)
    return root


def test_auto_on_cpu_uses_rapl_when_a_package_counter_is_readable(tmp_path):
    source = select_energy_source(make_config(), "cpu", powercap=_powercap(tmp_path))
    assert source.name == "rapl" and "RAPL" in source.selected_because
    (dev,) = source.devices
    assert (dev.id, dev.energy_mj(), dev.wrap_mj) == ("cpu:package-0", 123456.789, 262143328.85)
    source.start_tracking()
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("125456789\n")  # 2 J later
    reading = source.stop_tracking()
    assert reading.total_j == pytest.approx(2.0) and reading.per_device_j == {"cpu:package-0": pytest.approx(2.0)}


def test_an_unreadable_rapl_counter_is_unavailable_with_the_reason(tmp_path):
    """Kernels since 2020 let only root read energy_uj: the reason names that (or the read error, as root)."""
    source = select_energy_source(make_config(), "cpu", powercap=_powercap(tmp_path, readable=False))
    assert isinstance(source, NullEnergySource)
    assert "readable by root only" in source.reason or "not readable" in source.reason
    with pytest.raises(EnergyUnavailable, match="energy.sampler 'rapl'"):
        select_energy_source(make_config(energy={"sampler": "rapl"}), "cpu", powercap=tmp_path)


def test_no_powercap_tree_says_so(tmp_path):
    source = select_energy_source(make_config(), "cpu", powercap=tmp_path / "absent")
    assert isinstance(source, NullEnergySource) and "no RAPL package zone" in source.reason


@pytest.mark.parametrize("sampler", ["nvml", "zeus"])
def test_a_gpu_sampler_on_a_model_that_landed_on_cpu_fails_the_run(sampler):
    config = make_config(energy={"sampler": sampler})  # device auto: the model ran on CPU
    with pytest.raises(EnergyUnavailable, match="needs a GPU run, but the model runs on cpu"):
        select_energy_source(config, "cpu")


def test_codecarbon_without_the_package_says_how_to_get_it():
    try:
        import codecarbon  # noqa: F401
        pytest.skip("CodeCarbon is installed here")
    except ImportError:
        pass
    with pytest.raises(EnergyUnavailable, match="CodeCarbon is not installed"):
        select_energy_source(make_config(energy={"sampler": "codecarbon"}), "cpu")


def test_zeus_without_the_package_says_how_to_get_it():
    try:
        import zeus  # noqa: F401
        pytest.skip("Zeus is installed here")
    except ImportError:
        pass
    config = make_config(device="cuda", energy={"sampler": "zeus"})
    with pytest.raises(EnergyUnavailable, match="Zeus is not installed"):
        select_energy_source(config, "cuda")


def test_config_refuses_gpu_samplers_on_a_cpu_run():
    for sampler in ("nvml", "zeus"):
        with pytest.raises(ValueError, match=f"energy.sampler '{sampler}' needs a GPU run"):
            make_config(device="cpu", energy={"sampler": sampler})
