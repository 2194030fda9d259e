"""``lem run`` on the simulated GPU: PyTorch computes on the CPU, energy comes from lem's simulated NVML device through
the real pynvml, and every figure is checked against the scenario's own numbers (constant power per device, so the
true energy of a span is power x its length, whatever the span's wall-clock position).

The standard host (tests/simgpu.py): NVML numbers A=0 (95 W), B=1 (310 W), C=2 (180 W); CUDA's default order is C, A,
B. So an engine left unbound, or a CUDA ordinal read as an NVML index, runs or measures another card: the binding and
the energy figures below fail.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult
from simgpu import POWER_W, UUIDS, sim_env

COUNTER_UPDATE_S = 0.1  # the simulated counter's update period: the most a window's edge can be off by


def _result(out) -> tuple[ExperimentResult, object]:
    (exp_dir,) = out.iterdir()
    return ExperimentResult.model_validate_json((exp_dir / "result.json").read_text()), exp_dir


def _within_counter_error(measured_j: float, power_w: float, seconds: float) -> None:
    """A counter read at both ends of a span is off by at most one update per end."""
    assert measured_j == pytest.approx(power_w * seconds, abs=2 * COUNTER_UPDATE_S * power_w)


def _labelled_simulated(result: ExperimentResult) -> None:
    assert result.energy.source == "simgpu_nvml_counter" and "SIMULATED" in result.energy.method
    assert "simulated_device" in result.quality_flags
    assert result.environment.simulated_gpu


def test_offline_run_on_gpu_1_measures_it_within_1_percent_and_binds_the_engine_to_it(tmp_path, tiny_model_path,
                                                                                      simulated_gpu):
    scenario = simulated_gpu()
    cfg = write_yaml(tmp_path / "c.yaml", f"""\
model: {tiny_model_path}
n_prompts: 4
max_output_tokens: 8
force_output_length: true
devices: [1]
window: {{mode: windowed, duration_s: 10}}
energy: {{sample_hz: 10, baseline: {{mode: fresh, duration_s: 2}}}}
pytorch: {{batch_size: 4}}
""")
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "r"), env=sim_env(scenario))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result, exp_dir = _result(tmp_path / "r")
    _labelled_simulated(result)
    assert "SIMULATED" in proc.stdout  # the run summary says so
    # the engine was bound to NVML GPU 1 (B) and CUDA numbered it cuda:0; NVML measured B, not A or C
    env = result.environment
    assert (env.cuda_visible_devices, env.cuda_device_order) == ("1", "PCI_BUS_ID")
    assert [g.uuid for g in env.gpus] == [UUIDS[1]] and env.gpus[0].index == 1
    (device,) = result.energy.devices
    assert (device.index, device.uuid) == (1, UUIDS[1])
    # a >= 10 s window within 1 % of the scenario's 310 W x its length
    window = result.windows["windowed"]
    assert window.duration_s >= 10.0 and result.inference_time_s == pytest.approx(window.duration_s)
    truth_j = POWER_W[1] * result.inference_time_s
    assert abs(result.total_energy_j - truth_j) / truth_j < 0.01
    assert device.energy_j == pytest.approx(result.total_energy_j)
    assert result.energy_per_token_j == pytest.approx(result.total_energy_j / result.output_tokens)
    assert window.mean_power_w == pytest.approx(POWER_W[1], rel=0.01)
    # the idle baseline is B's power too (constant), and the adjusted energy is what is left: about nothing
    baseline = result.energy.baseline
    assert baseline.power_w == pytest.approx(POWER_W[1], rel=2 * COUNTER_UPDATE_S / baseline.duration_s)
    assert baseline.device_uuids == [UUIDS[1]] and baseline.conditions[0].power_limit_w == 700.0
    assert abs(result.adjusted_energy_j) < 0.02 * result.total_energy_j
    # phases: constant power, so each phase's energy is 310 W x its time
    phases = result.phases
    for phase in (phases.prefill, phases.decode):
        _within_counter_error(phase.energy_j, POWER_W[1], phase.time_s)
    # the sampled cross-check and the timeseries are in watts, of device "1" (B, as NVML names it)
    assert abs(result.energy.counter_vs_integrated_rel_diff) < 0.01
    table = pq.read_table(exp_dir / result.energy.timeseries_file).to_pydict()
    assert set(table["device"]) == {"1"} and device.id == "1"
    assert all(p == pytest.approx(POWER_W[1]) for p in table["power_w"] if p is not None)
    assert all(lim == 700.0 for lim in table["power_limit_w"])
    # the sampler's overhead: its thread's CPU time is a small share of the window it sampled
    assert result.energy.sampler_cpu_s is not None and result.energy.sampler_cpu_s < 0.05 * result.inference_time_s


def _two_gpu_config(tmp_path, model) -> object:
    return write_yaml(tmp_path / "two.yaml", f"""\
model: {model}
n_prompts: 4
max_output_tokens: 4
force_output_length: true
devices: [0, 2]
energy: {{baseline: {{mode: cached, duration_s: 2, spot_check_s: 2, drift_tolerance: 0.1}}}}
pytorch: {{batch_size: 4, device_map: sequential}}
""")


def test_two_gpus_are_summed_per_device_and_baselines_are_cached_by_device_state(tmp_path, tiny_model_path,
                                                                                 simulated_gpu):
    scenario = simulated_gpu()
    cfg = _two_gpu_config(tmp_path, tiny_model_path)
    env = {**sim_env(scenario), "LEM_CACHE_DIR": str(tmp_path / "cache")}

    def run(name: str) -> ExperimentResult:
        proc = run_lem("run", str(cfg), "-o", str(tmp_path / name), env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return _result(tmp_path / name)[0]

    first = run("r1")
    _labelled_simulated(first)
    assert [(d.index, d.uuid) for d in first.energy.devices] == [(0, UUIDS[0]), (2, UUIDS[2])]
    for device, power in zip(first.energy.devices, (POWER_W[0], POWER_W[2])):
        _within_counter_error(device.energy_j, power, first.inference_time_s)
    assert first.total_energy_j == pytest.approx(sum(d.energy_j for d in first.energy.devices))
    assert first.environment.cuda_visible_devices == "0,2"
    base = first.energy.baseline
    assert base.source == "fresh" and base.cache_check.outcome == "measured"
    assert base.power_w == pytest.approx(POWER_W[0] + POWER_W[2], rel=2 * COUNTER_UPDATE_S / base.duration_s)
    assert [c.uuid for c in base.conditions] == [UUIDS[0], UUIDS[2]]
    assert [c.power_limit_w for c in base.conditions] == [700.0, 700.0]

    second = run("r2")  # same GPUs in the same state: the cached baseline is spot-checked and reused
    assert second.energy.baseline.source == "cached" and second.energy.baseline.cache_check.outcome == "reused"
    assert second.energy.baseline.power_w == base.power_w

    # a power limit changed on A (by another tool, here a plain pynvml call) changes the cache key: measured afresh
    code = ("from lem_runner.contract import nvml\nwith nvml.session() as n:\n"
            "    n.nvmlDeviceSetPowerManagementLimit(n.nvmlDeviceGetHandleByIndex(0), 250000)")
    subprocess.run([sys.executable, "-c", code], check=True, env={**__import__("os").environ, **env})
    third = run("r3")
    check = third.energy.baseline.cache_check
    assert third.energy.baseline.source == "fresh" and check.outcome == "measured"
    assert [c.power_limit_w for c in third.energy.baseline.conditions] == [250.0, 700.0]

    # the comparison marks the simulated energy (no simulator switch needed to read results)
    (r1,), (r2,) = (tmp_path / "r1").iterdir(), (tmp_path / "r2").iterdir()
    compared = run_lem("results", "compare", str(r1), str(r2))
    assert compared.returncode == 0, compared.stderr
    assert "SIMULATED GPU: #1, #2 took their energy from lem's simulated NVML device" in compared.stdout


def test_a_serving_run_on_the_simulated_gpu_attributes_the_scenarios_energy(tmp_path, tiny_model_path,
                                                                             simulated_gpu):
    scenario = simulated_gpu()
    cfg = write_yaml(tmp_path / "serve.yaml", f"""\
model: {tiny_model_path}
scenario: serving
dtype: float32
max_output_tokens: 6
force_output_length: true
devices: [1]
energy: {{baseline: {{mode: fresh, duration_s: 1}}}}
pytorch: {{batch_size: 8}}
serving:
  arrival: poisson
  rate: 4
  n_requests: 10
  warmup_requests: 1
  input_tokens: {{dist: uniform, min: 4, max: 12}}
""")
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "r"), env=sim_env(scenario))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result, exp_dir = _result(tmp_path / "r")
    _labelled_simulated(result)
    s = result.serving
    assert s.n_ok == 10 and [d.uuid for d in result.energy.devices] == [UUIDS[1]]
    _within_counter_error(result.total_energy_j, POWER_W[1], s.duration_s)
    assert result.energy_per_token_j == pytest.approx(result.total_energy_j / result.output_tokens)
    requests = pq.read_table(exp_dir / "requests.parquet").to_pylist()
    per_request = [r["energy_j"] for r in requests]
    assert all(e is not None and e > 0 for e in per_request)
    # every joule of the window goes to a request or to idle time
    assert sum(per_request) + (s.idle_energy_j or 0.0) == pytest.approx(result.total_energy_j, rel=0.01)
    _within_counter_error(s.idle_energy_j or 0.0, POWER_W[1], s.idle_time_s)
    assert s.energy_per_request.mean_j == pytest.approx(sum(per_request) / len(per_request))


def test_doctor_says_the_gpus_are_simulated(simulated_gpu):
    proc = run_lem("doctor", env=sim_env(simulated_gpu()), timeout=120)
    assert "SIMULATED GPU" in proc.stdout and "Simulated H100 A" in proc.stdout, proc.stdout[-2000:]


def test_the_state_tool_shows_what_a_killed_sweep_left_and_resets_it(simulated_gpu):
    scenario = simulated_gpu()
    code = ("from lem_runner.contract import nvml\nwith nvml.session() as n:\n"
            "    n.nvmlDeviceSetGpuLockedClocks(n.nvmlDeviceGetHandleByIndex(2), 1200, 1200)")
    env = {**__import__("os").environ, **sim_env(scenario)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    show = subprocess.run([sys.executable, "-m", "lem_runner.simgpu", "show", str(scenario)], capture_output=True,
                          text=True, check=True)
    assert json.loads(show.stdout) == {UUIDS[2]: {"locked_sm_clocks": [1200, 1200]}}
    reset = subprocess.run([sys.executable, "-m", "lem_runner.simgpu", "reset", str(scenario)], capture_output=True,
                           text=True, check=True)
    assert json.loads(reset.stdout) == {}
