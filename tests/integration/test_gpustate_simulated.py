"""The GPU operating point end to end on the simulated GPU: real `lem run` subprocesses and real signals, with the
controller's real NVML code (gpustate.NvmlGpu over the real pynvml) setting power limits and clock locks on a device
whose settings outlive every process, as a real GPU's do. What the "GPU" was left at is read afterwards through
`python -m lem_runner.simgpu show`, a process of its own.

The sweep applies each point, reads it back, and restores the GPU; a failed run, Ctrl-C and SIGTERM restore it too;
a SIGKILLed lem leaves it changed with its journal, and the next lem start restores it and says so; without root
NVML answers NO_PERMISSION and lem stops with exit 3 having changed nothing. (tests/integration/
test_gpustate_signals.py holds the same paths at the GpuControl seam; this is the NVML path under them.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult

simgpu = pytest.importorskip("simgpu", reason="the simulated GPU's test helpers (tests/simgpu.py) are not here")

DEFAULT_LIMIT_MW = 700_000


def _scenario(tmp_path: Path, root: bool = True) -> Path:
    doc = simgpu.three_gpus(root=root)
    for dev in doc["devices"]:
        dev["power_limit_w"] = {"default": 700, "min": 200, "max": 700}
    return simgpu.write_scenario(tmp_path / "simgpu", doc)


def _env(tmp_path: Path, scenario: Path) -> dict[str, str]:
    return {**simgpu.sim_env(scenario), "LEM_LOCK_DIR": str(tmp_path / "locks")}


def left_at(scenario: Path) -> dict[str, dict]:
    """What each simulated GPU holds now that differs from its defaults (a power limit put back to the default
    counts as the default), read by a separate process."""
    out = subprocess.run([sys.executable, "-m", "lem_runner.simgpu", "show", str(scenario)], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    changed = {}
    for uuid, settings in json.loads(out.stdout).items():
        settings = {k: v for k, v in settings.items() if not (k == "power_limit_mw" and v == DEFAULT_LIMIT_MW)}
        if settings:
            changed[uuid] = settings
    return changed


def _journals(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "locks").glob("restore-*.json")) if (tmp_path / "locks").is_dir() else []


def _config(tmp_path: Path, model: Path, gpu: str = "", n_prompts: int = 4, name: str = "op") -> Path:
    return write_yaml(tmp_path / f"{name}.yaml", f"name: {name}\nmodel: {model}\nn_prompts: {n_prompts}\n"
                                                 "max_output_tokens: 8\nforce_output_length: true\n"
                                                 "warmup:\n  n_batches: 0\n" + gpu)


HELD = "gpu:\n  power_limit_w: 300\n  locked_sm_clock_mhz: 1410\n"


def test_a_power_limit_sweep_applies_reads_back_and_restores_each_point(tmp_path, tiny_model_path):
    scenario = _scenario(tmp_path)
    study = write_yaml(tmp_path / "sweep.yaml", f"name: sweep\nbase:\n  model: {tiny_model_path}\n  n_prompts: 4\n"
                                                "  max_output_tokens: 8\n  warmup: {n_batches: 0}\n"
                                                "  gpu: {locked_sm_clock_mhz: 1410}\n"
                                                "sweep:\n  gpu.power_limit_w: [300, 450]\n")
    out = run_lem("run", str(study), "-o", str(tmp_path / "r"), env=_env(tmp_path, scenario), timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    results = [ExperimentResult.model_validate_json(p.read_text()) for p in sorted((tmp_path / "r").rglob("result.json"))]
    assert sorted(r.config.gpu.power_limit_w for r in results) == [300, 450]
    for r in results:
        (s,) = r.operating_point.settings
        assert s.uuid == simgpu.UUIDS[0] and s.gpu == "0"
        assert s.applied_power_limit_w == r.config.gpu.power_limit_w  # read back from the device, in watts
        assert s.previous_power_limit_w == 700.0 and s.requested_sm_clock_mhz == (1410, 1410)
        assert "simulated_device" in r.quality_flags
    assert left_at(scenario) == {} and _journals(tmp_path) == []


def test_a_failed_run_restores_the_gpu(tmp_path):
    scenario = _scenario(tmp_path)
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')  # no weights, no tokenizer: the load fails
    out = run_lem("run", str(_config(tmp_path, broken, HELD)), "-o", str(tmp_path / "r"),
                  env=_env(tmp_path, scenario), timeout=300)
    assert out.returncode not in (0, 3, 130), out.stdout + out.stderr
    assert left_at(scenario) == {} and _journals(tmp_path) == []


def _start(cfg: Path, out: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "llenergymeasure", "run", str(cfg), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, "COLUMNS": "200", **env})


def _wait_until_measuring(proc: subprocess.Popen) -> None:
    for line in proc.stdout:
        if line.strip().startswith("measuring"):
            return
    pytest.fail(f"lem ended before measuring: {proc.stderr.read()}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_ctrl_c_or_sigterm_mid_run_restores_the_gpu(tmp_path, tiny_model_path, sig):
    scenario = _scenario(tmp_path)
    proc = _start(_config(tmp_path, tiny_model_path, HELD, n_prompts=2000), tmp_path / "r", _env(tmp_path, scenario))
    try:
        _wait_until_measuring(proc)
        held = left_at(scenario)
        assert held == {simgpu.UUIDS[0]: {"power_limit_mw": 300_000, "locked_sm_clocks": [1410, 1410]}}, held
        assert len(_journals(tmp_path)) == 1
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert left_at(scenario) == {} and _journals(tmp_path) == []


def test_a_sigkilled_lem_leaves_the_gpu_changed_and_the_next_lem_restores_it(tmp_path, tiny_model_path):
    scenario = _scenario(tmp_path)
    env = _env(tmp_path, scenario)
    proc = _start(_config(tmp_path, tiny_model_path, HELD, n_prompts=2000), tmp_path / "r", env)
    try:
        _wait_until_measuring(proc)
        proc.kill()  # SIGKILL: no code of lem's runs, so nothing restores the GPU
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert left_at(scenario) == {simgpu.UUIDS[0]: {"power_limit_mw": 300_000, "locked_sm_clocks": [1410, 1410]}}
    (journal,) = _journals(tmp_path)
    assert json.loads(journal.read_text())["pid"] == proc.pid
    # the next lem that uses GPU 0 restores it before measuring, and says so
    out = run_lem("run", str(_config(tmp_path, tiny_model_path, name="next")), "-o", str(tmp_path / "r2"), env=env,
                  timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"GPU 0: restored from the journal left by pid {proc.pid} " in out.stderr
    assert "SM clock lock reset, power limit back to 700 W" in out.stderr
    assert left_at(scenario) == {} and _journals(tmp_path) == []


def test_without_root_lem_stops_with_exit_3_and_the_gpu_unchanged(tmp_path, tiny_model_path):
    scenario = _scenario(tmp_path, root=False)
    out = run_lem("run", str(_config(tmp_path, tiny_model_path, HELD)), "-o", str(tmp_path / "r"),
                  env=_env(tmp_path, scenario), timeout=300)
    assert out.returncode == 3, out.stdout + out.stderr
    (line,) = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: gpu.power_limit_w: NVML refused the change (") and "Insufficient Permissions" in line
    assert "need root" in line and line.endswith("nothing was changed")
    assert "Traceback" not in out.stderr
    assert left_at(scenario) == {} and _journals(tmp_path) == []
