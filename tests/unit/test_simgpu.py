"""The simulated NVML device through the real pynvml, checked against what NVML's documentation says a GPU reports
and against truth the test computes from its own scripted power (tests/simgpu.py), not from the simulator."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest
from device_contract import assert_counter_device_contract
from lem_runner.contract import nvml
from lem_runner.energy.counter import measure_update_period
from lem_runner.energy.nvml import NvmlDevice, NvmlEnergySource
from lem_runner.simgpu.cuda import cuda_uuids
from lem_runner.simgpu.scenario import load_scenario
from simgpu import BUS_IDS, POWER_W, UUIDS, sim_env, three_gpus, true_energy_j

pynvml = pytest.importorskip("pynvml")

#: a trace with idle, a ramp up, load and a ramp down, repeating every 2 s (the test's own copy of the numbers)
RAMPS = {"segments": [{"s": 0.5, "w": 100}, {"s": 0.5, "from_w": 100, "to_w": 400}, {"s": 0.5, "w": 400},
                      {"s": 0.5, "from_w": 400, "to_w": 100}], "repeat": True}


def ramps_w(t0: float):
    def power(t: float) -> float:
        x = (t - t0) % 2.0
        if x < 0.5:
            return 100.0
        if x < 1.0:
            return 100.0 + 600.0 * (x - 0.5)
        if x < 1.5:
            return 400.0
        return 400.0 - 600.0 * (x - 1.5)
    return power


def tick(t: float, t0: float) -> float:
    """The counter's last update at or before t: every 100 ms from t0 (the scenario's documented model)."""
    return t0 + math.floor((t - t0) / 0.1 + 1e-9) * 0.1


@pytest.fixture
def sim(simulated_gpu, monkeypatch):
    """Select a scenario for this process (the public switch) and hand back an initialised pynvml."""
    opened = []

    def select(doc: dict | None = None):
        path = simulated_gpu(doc)
        for key, value in sim_env(path).items():
            monkeypatch.setenv(key, value)
        module = nvml.init()
        opened.append(module)
        return module, path

    yield select
    for module in opened:
        nvml.shutdown(module)
    monkeypatch.delenv(nvml.SIMULATED_ENV, raising=False)
    nvml.load()  # drops the simulated driver from pynvml for the tests that follow


def test_nvml_enumerates_the_gpus_in_pci_bus_order_with_their_uuids(sim):
    n, _ = sim()
    assert n.nvmlDeviceGetCount() == 3
    handles = [n.nvmlDeviceGetHandleByIndex(i) for i in range(3)]
    assert [n.nvmlDeviceGetUUID(h) for h in handles] == list(UUIDS)
    assert [nvml.text(n.nvmlDeviceGetPciInfo(h).busId) for h in handles] == list(BUS_IDS)
    assert n.nvmlDeviceGetIndex(n.nvmlDeviceGetHandleByUUID(UUIDS[2])) == 2
    assert n.nvmlDeviceGetIndex(n.nvmlDeviceGetHandleByPciBusId(BUS_IDS[1])) == 1
    with pytest.raises(n.NVMLError_NotFound):
        n.nvmlDeviceGetHandleByUUID("GPU-00000000-0000-0000-0000-000000000000")
    with pytest.raises(n.NVMLError_InvalidArgument):
        n.nvmlDeviceGetHandleByIndex(3)


def test_cuda_numbers_the_fastest_gpu_first_unless_told_pci_bus_order(simulated_gpu):
    scenario = load_scenario(simulated_gpu())
    bare = [u.removeprefix("GPU-") for u in UUIDS]
    assert cuda_uuids(scenario, {}) == [bare[2], bare[0], bare[1]]  # FASTEST_FIRST: C, then PCI order
    assert cuda_uuids(scenario, {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}) == bare
    assert cuda_uuids(scenario, {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}) == [bare[1]]
    assert cuda_uuids(scenario, {"CUDA_VISIBLE_DEVICES": "1"}) == [bare[0]]  # ordinal 1 of C, A, B
    assert cuda_uuids(scenario, {"CUDA_VISIBLE_DEVICES": f"{UUIDS[1][:12]},7,0"}) == [bare[1]]  # stops at 7


def test_calls_before_init_fail_as_uninitialised(simulated_gpu, monkeypatch):
    monkeypatch.setenv(nvml.SIMULATED_ENV, str(simulated_gpu()))
    module = nvml.load()
    try:
        with pytest.raises(module.NVMLError_Uninitialized):
            module.nvmlDeviceGetCount()
    finally:
        monkeypatch.delenv(nvml.SIMULATED_ENV)
        nvml.load()


def test_the_energy_counter_is_millijoules_held_between_100_ms_updates(sim):
    t0 = time.time() - 10.0
    n, _ = sim(three_gpus(power=(RAMPS, 310.0, 180.0), t0=t0))
    h = n.nvmlDeviceGetHandleByIndex(0)
    w0, c0 = time.time(), n.nvmlDeviceGetTotalEnergyConsumption(h)
    time.sleep(1.3)
    w1, c1 = time.time(), n.nvmlDeviceGetTotalEnergyConsumption(h)
    truth_j = true_energy_j(ramps_w(t0), tick(w0, t0), tick(w1, t0))
    assert isinstance(c0, int) and (c1 - c0) / 1000.0 == pytest.approx(truth_j, abs=0.05)
    # not continuous: it stands still between updates, which lem's probe measures as a 100 ms period
    period = measure_update_period(lambda: n.nvmlDeviceGetTotalEnergyConsumption(h), time.time, time.sleep)
    assert period == pytest.approx(0.1, abs=0.02)


def test_power_is_milliwatts_instant_follows_a_step_and_the_average_lags_it(sim):
    t0 = time.time() - 1.25  # 0.25 s into the 300 W step after a second at 100 W
    n, _ = sim(three_gpus(power=([{"s": 1.0, "w": 100}, {"s": 60, "w": 300}], 310.0, 180.0), t0=t0))
    h = n.nvmlDeviceGetHandleByIndex(0)
    (field,) = n.nvmlDeviceGetFieldValues(h, [n.NVML_FI_DEV_POWER_INSTANT])
    averaged_mw = n.nvmlDeviceGetPowerUsage(h)
    x = tick(time.time(), t0) - t0  # seconds since t0 at the last update
    assert field.nvmlReturn == 0 and field.value.uiVal == 300_000
    assert averaged_mw == pytest.approx(1000 * (100 * (2.0 - x) + 300 * (x - 1.0)), abs=1500)
    assert averaged_mw < 300_000


def test_a_power_limit_caps_power_and_energy_and_outlives_the_process(sim):
    t0 = time.time() - 5.0
    n, path = sim(three_gpus(t0=t0))
    h = n.nvmlDeviceGetHandleByIndex(1)  # B: 310 W
    assert n.nvmlDeviceGetPowerManagementLimitConstraints(h) == [200_000, 700_000]
    with pytest.raises(n.NVMLError_InvalidArgument):
        n.nvmlDeviceSetPowerManagementLimit(h, 150_000)
    n.nvmlDeviceSetPowerManagementLimit(h, 250_000)
    time.sleep(0.25)
    w0, c0 = time.time(), n.nvmlDeviceGetTotalEnergyConsumption(h)
    time.sleep(0.6)
    w1, c1 = time.time(), n.nvmlDeviceGetTotalEnergyConsumption(h)
    assert (c1 - c0) / 1000 == pytest.approx(250.0 * (tick(w1, t0) - tick(w0, t0)), abs=0.05)
    (field,) = n.nvmlDeviceGetFieldValues(h, [n.NVML_FI_DEV_POWER_INSTANT])
    assert field.value.uiVal == 250_000
    assert n.nvmlDeviceGetCurrentClocksEventReasons(h) & n.nvmlClocksEventReasonSwPowerCap
    # another process (a later lem, after this one was killed) finds the GPU still limited
    code = ("from lem_runner.contract import nvml\nwith nvml.session() as n:\n"
            "    print(n.nvmlDeviceGetPowerManagementLimit(n.nvmlDeviceGetHandleByIndex(1)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={
        **__import__("os").environ, **sim_env(path)}).stdout
    assert out.strip() == "250000"


def test_gpu_control_speaks_watts_to_callers_and_milliwatts_to_nvml(sim):
    from llenergymeasure.gpustate.device import NvmlGpu

    n, _ = sim()
    gpu = NvmlGpu(UUIDS[1], n)
    assert gpu.id == UUIDS[1] and gpu.uuid == UUIDS[1]
    assert gpu.power_limit_range_w() == (200.0, 700.0)
    gpu.set_power_limit_w(275.5)
    assert n.nvmlDeviceGetPowerManagementLimit(n.nvmlDeviceGetHandleByIndex(1)) == 275_500  # read beside lem's code
    assert gpu.power_limit_w() == 275.5
    mem = gpu.supported_memory_clocks_mhz()
    assert mem == [2619] and 1980 in gpu.supported_sm_clocks_mhz(2619)
    gpu.lock_sm_clocks(1200, 1200)
    assert gpu.sm_clock_mhz() == 1200  # under load the clock sits at the lock
    gpu.reset_sm_clocks()
    gpu.set_persistence_mode(False)
    assert gpu.persistence_mode() is False


def test_a_non_root_caller_gets_no_permission_and_nothing_changes(sim):
    from llenergymeasure.gpustate.device import GpuStateError, NvmlGpu

    n, path = sim(three_gpus(root=False))
    gpu = NvmlGpu("0", n)
    with pytest.raises(GpuStateError) as err:
        gpu.set_power_limit_w(300)
    assert err.value.permission
    with pytest.raises(GpuStateError) as err:
        gpu.lock_sm_clocks(1200, 1200)
    assert err.value.permission
    assert gpu.power_limit_w() == 700.0
    assert not path.with_name(path.name + ".state.json").exists() or "power_limit_mw\": 3" not in \
        path.with_name(path.name + ".state.json").read_text()


def test_functions_an_older_driver_lacks_fail_as_function_not_found(sim):
    n, _ = sim(three_gpus(missing_functions=["nvmlDeviceGetFieldValues"]))
    h = n.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(n.NVMLError_FunctionNotFound):
        n.nvmlDeviceGetFieldValues(h, [n.NVML_FI_DEV_POWER_INSTANT])
    with pytest.raises(n.NVMLError_FunctionNotFound):
        n.nvmlDeviceGetPowerSource(h)  # a call this simulated driver does not export at all
    dev = NvmlDevice(n, "0")
    assert dev.power_source == "averaged"  # lem falls back to nvmlDeviceGetPowerUsage
    assert dev.sample().power_w == pytest.approx(POWER_W[0])


def test_a_query_the_device_does_not_support_leaves_its_field_none(sim):
    doc = three_gpus()
    doc["devices"][1]["unsupported"] = ["nvmlDeviceGetTemperature"]  # A, listed second
    n, _ = sim(doc)
    sample = NvmlDevice(n, "0").sample()
    assert sample.temperature_c is None and sample.power_w == pytest.approx(POWER_W[0])


def test_lems_nvml_device_on_the_simulator_keeps_the_counter_device_contract(sim):
    n, _ = sim()
    dev = NvmlDevice(n, "2")
    assert_counter_device_contract(dev, lambda: time.sleep(0.3))
    sample = dev.sample()
    assert sample.power_w == pytest.approx(POWER_W[2]) and sample.power_limit_w == 700.0
    assert sample.memory_used_mib == pytest.approx(512.0)
    state = dev.idle_state()
    assert state.uuid == UUIDS[2] and state.power_limit_w == 700.0 and state.sm_clock_mhz == 1980


def test_the_energy_of_any_wall_clock_span_matches_the_scripted_integral(sim):
    """lem's NVML source over a 3 s window of ramps: the window and sub-spans against the test's own integral."""
    t0 = time.time() - 10.0
    sim(three_gpus(power=(RAMPS, 310.0, 180.0), t0=t0))
    source = NvmlEnergySource([0, 1], sample_hz=20.0)
    assert source.is_available(), source.unavailable_reason
    assert source.name == nvml.SIMULATED_SOURCE and "SIMULATED" in source.method
    offset = time.time() - time.perf_counter()  # perf_counter (lem's clock) to wall time
    source.start_tracking()
    time.sleep(3.0)
    reading = source.stop_tracking()
    wall = (reading.t_start + offset, reading.t_end + offset)
    truth_a = true_energy_j(ramps_w(t0), *wall)
    truth_b = 310.0 * (wall[1] - wall[0])
    assert reading.per_device_j["0"] == pytest.approx(truth_a, abs=400 * 0.1)  # one 100 ms update at most
    assert reading.per_device_j["1"] == pytest.approx(truth_b, abs=310 * 0.1)
    assert reading.total_j == pytest.approx(reading.per_device_j["0"] + reading.per_device_j["1"])
    a, b = reading.t_start + 1.0, reading.t_start + 2.0
    span = reading.energy_between(a, b)
    assert span == pytest.approx(true_energy_j(ramps_w(t0), a + offset, b + offset) + 310.0, abs=0.1 * 710)
    assert reading.sampler_cpu_s is not None and reading.sampler_cpu_s < 0.1 * reading.duration_s


def test_a_bad_scenario_is_one_line_naming_the_file(tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text('{"devices": [{"power": {"segments": [{"w": 5}]}}]}')
    monkeypatch.setenv(nvml.SIMULATED_ENV, str(bad))
    try:
        with pytest.raises(nvml.NvmlUnavailable) as err:
            nvml.init()
        message = str(err.value)
        assert str(bad) in message and "devices[0].power.segments[0]" in message and "\n" not in message
    finally:
        monkeypatch.delenv(nvml.SIMULATED_ENV)
        nvml.load()


def test_the_environment_record_describes_the_simulated_gpu_and_says_it_is_simulated(sim, monkeypatch):
    from lem_runner.measurement.environment import collect_environment

    _, path = sim()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    env = collect_environment({}, [1], True, None, None)
    (gpu,) = env.gpus
    assert (gpu.index, gpu.uuid, gpu.name, gpu.pci_bus_id) == (1, UUIDS[1], "Simulated H100 B", BUS_IDS[1])
    assert gpu.power_limit_w == 700.0 and gpu.memory_total_mib == 81559 and gpu.compute_capability == "9.0"
    assert gpu.max_sm_clock_mhz == 1980 and gpu.persistence_mode is True and gpu.mig_mode is False
    assert (env.driver_version, env.cuda_driver_version) == ("550.90.07", "12.4")
    assert env.simulated_gpu == str(path)


def test_application_clocks_accept_only_supported_values_and_a_yaml_scenario_reads_as_json(sim, tmp_path):
    yaml = pytest.importorskip("yaml")
    doc = three_gpus()
    n, path = sim(doc)
    h = n.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(n.NVMLError_InvalidArgument):
        n.nvmlDeviceSetApplicationsClocks(h, 2619, 1981)  # not a supported SM clock
    n.nvmlDeviceSetApplicationsClocks(h, 2619, 1410)
    assert n.nvmlDeviceGetApplicationsClock(h, n.NVML_CLOCK_SM) == 1410
    assert n.nvmlDeviceGetCurrentClocksEventReasons(h) & n.nvmlClocksEventReasonApplicationsClocksSetting
    n.nvmlDeviceResetApplicationsClocks(h)
    assert n.nvmlDeviceGetApplicationsClock(h, n.NVML_CLOCK_SM) == 1980
    as_yaml = tmp_path / "scenario.yaml"
    as_yaml.write_text(yaml.safe_dump(doc))
    assert load_scenario(as_yaml).devices == load_scenario(path).devices
