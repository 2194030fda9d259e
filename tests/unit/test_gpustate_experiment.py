"""The operating point in the experiment path: set on the host while the launcher runs (its runner gets what was
applied), restored when the run ends however it ends; and what happens where there is no GPU or no NVML."""

from __future__ import annotations

import json

import pytest
from conftest import make_config, make_result, write_yaml
from fakes import FakeLauncher, fake_gpu_opener
from lem_runner.contract import RunError
from llenergymeasure.errors import RunFailed, SetupError
from llenergymeasure.experiment import execute_experiment
from llenergymeasure.gpustate.journal import host_journals
from llenergymeasure.host.gpu_lock import LockPolicy, use_policy


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LEM_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return tmp_path / "locks"


@pytest.fixture
def gpu_host(monkeypatch, simulated_gpu):
    """A host whose NVML sees GPUs (simulated ones: lem's checks ask NVML before anything runs); the operating point
    itself goes through the fake GPU control each test hands in."""
    from simgpu import sim_env

    for key, value in sim_env(simulated_gpu()).items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def config(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return make_config(model=str(model), name="exp", device="cuda", n_prompts=2, max_output_tokens=4,
                       gpu={"power_limit_w": 350, "locked_sm_clock_mhz": [1005, 1500]})


@pytest.fixture
def on_gpu_host(gpu_host, config):
    """``config`` on the simulated GPU host, device auto: a simulated GPU computes nothing, so `cuda` is refused."""
    return config.model_copy(update={"device": "auto"})


def _power(tmp_path) -> float:
    return json.loads((tmp_path / "state" / "gpu-0.json").read_text())["power_limit_w"]


def test_the_runner_runs_under_the_operating_point_and_the_gpu_is_restored(tmp_path, lock_dir, on_gpu_host):
    config = on_gpu_host
    seen = {}

    def during(spec):
        seen["power"] = _power(tmp_path)
        seen["journals"] = len(host_journals(lock_dir))

    launcher = FakeLauncher(result=make_result(config=config), before_exit=during)
    execute_experiment(config, launcher=launcher, output=tmp_path / "r",
                       gpu_control=fake_gpu_opener(tmp_path / "state"))
    assert seen == {"power": 350.0, "journals": 1}
    (setting,) = launcher.specs[0].request.gpu_settings
    assert (setting.gpu, setting.applied_power_limit_w, setting.previous_power_limit_w) == ("0", 350.0, 700.0)
    assert setting.requested_sm_clock_mhz == (1005, 1500)
    assert _power(tmp_path) == 700.0 and host_journals(lock_dir) == []


def test_a_failed_run_restores_the_gpu_too(tmp_path, lock_dir, on_gpu_host):
    config = on_gpu_host
    launcher = FakeLauncher(error=RunError(error_type="RuntimeError", message="boom", phase="measure"))
    with pytest.raises(RunFailed):
        execute_experiment(config, launcher=launcher, output=tmp_path / "r",
                           gpu_control=fake_gpu_opener(tmp_path / "state"))
    assert _power(tmp_path) == 700.0 and host_journals(lock_dir) == []


def test_a_value_the_device_refuses_is_exit_2_before_any_folder_or_change(tmp_path, lock_dir, config):
    bad = config.model_copy(update={"gpu": config.gpu.model_copy(update={"power_limit_w": 900.0})})
    launcher = FakeLauncher(result=make_result(config=bad))
    with pytest.raises(Exception) as err:
        execute_experiment(bad, output=tmp_path / "r", launcher=launcher,
                           gpu_control=fake_gpu_opener(tmp_path / "state"))
    assert err.value.exit_code == 2 and "gpu.power_limit_w: 900 W is outside" in str(err.value)
    assert launcher.specs == [] and not (tmp_path / "r").exists() and _power(tmp_path) == 700.0


def test_without_nvml_a_gpu_section_is_a_setup_error(tmp_path, lock_dir, config):
    """The real NvmlGpu opener on this machine (no NVIDIA driver): one line, exit 3, no run."""
    launcher = FakeLauncher(result=make_result(config=config))
    with use_policy(LockPolicy(enabled=False)), pytest.raises(SetupError) as err:
        execute_experiment(config, output=tmp_path / "r", launcher=launcher)
    assert err.value.exit_code == 3 and "\n" not in str(err.value)
    assert str(err.value).startswith("gpu: setting the operating point needs NVML on the host: cannot open GPU 0 "
                                     "through NVML: ")
    assert launcher.specs == []


def test_auto_device_with_no_gpu_and_a_gpu_section_is_a_setup_error(tmp_path, lock_dir, config):
    cfg = config.model_copy(update={"device": "auto"})
    with pytest.raises(SetupError, match="no NVIDIA GPU is visible"):
        execute_experiment(cfg, output=tmp_path / "r", launcher=FakeLauncher(result=make_result(config=cfg)))


def test_gpu_settings_are_sweep_axes(tmp_path, gpu_host):
    from llenergymeasure.config.study import expand_study, load_study

    (tmp_path / "config.json").write_text("{}")  # a model folder validate accepts

    study = write_yaml(tmp_path / "s.yaml", f"""\
name: dial
base: {{model: {tmp_path}}}
sweep:
  gpu.power_limit_w: [300, 400]
  gpu.locked_sm_clock_mhz: [990, [1200, 1400]]
""")
    points = expand_study(load_study(study)).points
    assert [(p.config.gpu.power_limit_w, p.config.gpu.locked_sm_clock_mhz) for p in points] == [
        (300, 990), (300, (1200, 1400)), (400, 990), (400, (1200, 1400))]


def test_config_validate_checks_the_gpu_section_against_the_device(tmp_path):
    from lem_runner.contract import GpuConfig
    from llenergymeasure.errors import ConfigError
    from llenergymeasure.gpustate.apply import check_config

    opener = fake_gpu_opener(tmp_path / "state")
    assert check_config(GpuConfig(power_limit_w=300), ["0"], opener) is None
    with pytest.raises(ConfigError, match=r"gpu.locked_sm_clock_mhz: 100–200 MHz is outside what GPU 0 supports"):
        check_config(GpuConfig(locked_sm_clock_mhz=(100, 200)), ["0"], opener)
    assert "not checked against a device" in check_config(GpuConfig(power_limit_w=300), [], opener)
    assert _power(tmp_path) == 700.0  # read only


def test_a_power_limit_sweep_sets_each_point_and_restores_between_them(tmp_path, lock_dir, gpu_host):
    from llenergymeasure.study import StudyConfig, execute_study, expand_study

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    study = StudyConfig.model_validate({
        "name": "dial", "base": {"model": str(model), "n_prompts": 2, "max_output_tokens": 4},
        "sweep": {"gpu.power_limit_w": [300, 450]}, "n_cycles": 1})
    in_force: list[float] = []

    def launcher_for(point, isolated):
        in_force.append(_power(tmp_path) if (tmp_path / "state" / "gpu-0.json").exists() else None)
        return FakeLauncher(result=make_result(config=point.config),
                            before_exit=lambda spec: in_force.append(_power(tmp_path)))

    outcome = execute_study(study, expand_study(study), output=tmp_path / "r", launcher_for=launcher_for,
                            gpu_control=fake_gpu_opener(tmp_path / "state"))
    assert outcome.status == "complete"
    # before each run the GPU is at its default (700 W, or not opened yet); during it, at the point's limit
    assert in_force == [None, 300.0, 700.0, 450.0]
    assert _power(tmp_path) == 700.0 and host_journals(lock_dir) == []


def test_a_cached_idle_baseline_belongs_to_its_operating_point(tmp_path, config):
    from llenergymeasure.results.baselines import BaselineCache

    cache = BaselineCache(tmp_path / "baselines.json")
    at_350 = config.model_copy(update={"energy": config.energy.model_copy(
        update={"baseline": config.energy.baseline.model_copy(update={"mode": "cached"})})})
    baseline = {"power_w": 80.0, "duration_s": 5.0, "measured_at": "2025-01-01T11:59:00Z", "source": "fresh"}
    cache.put(at_350, make_result(config=at_350, energy={"source": "nvml_counter", "method": "NVML",
                                                         "baseline": baseline}))
    assert [b.power_w for b in cache.get(at_350)] == [80.0]
    at_500 = at_350.model_copy(update={"gpu": at_350.gpu.model_copy(update={"power_limit_w": 500.0})})
    default = at_350.model_copy(update={"gpu": type(at_350.gpu)()})
    assert cache.get(at_500) == [] and cache.get(default) == []  # idle power differs per operating point
