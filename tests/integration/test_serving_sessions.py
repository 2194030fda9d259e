"""Serving runs in an engine session share one server: a study's rate points on the PyTorch path measured against one
real transformers server on loopback, kept by one real runner; the server gone between runs for real (SIGKILL) is
replaced, not measured on. (vLLM's server kept across rates, with its prefix cache reset, is in
tests/docker/test_serving_vllm.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_lem, write_yaml
from lem_runner.contract import RESULT_FILE, SESSION_END_FILE, ExperimentConfig, RunRequest, session_request_file
from test_serving_pytorch import _server_pids

LOAD = """\
    arrival: constant
    n_requests: 6
    warmup_requests: 1
    input_tokens: {dist: fixed, value: 8}
"""


def _rates_study(tmp_path: Path, model: Path, reuse: bool, rates: list[int]) -> Path:
    # no pytorch.batch_size: a serving run takes the spec's serving default (32), not the offline 1
    return write_yaml(tmp_path / "rates.yaml", f"""\
name: rates
engine_reuse: {str(reuse).lower()}
base:
  model: {model}
  scenario: serving
  device: cpu
  dtype: float32
  max_output_tokens: 4
  force_output_length: true
  runner: local
  serving:
{LOAD}sweep:
  serving.rate: {rates}
""")


def _results(study_dir: Path) -> list[tuple[Path, dict]]:
    runs = [(p, json.loads((p / RESULT_FILE).read_text())) for p in study_dir.iterdir()
            if p.is_dir() and (p / RESULT_FILE).is_file()]
    return sorted(runs, key=lambda r: r[1]["start_time"])


def test_a_studys_rate_points_share_one_server_each_with_its_own_window(tmp_path, tiny_model_path):
    study = _rates_study(tmp_path, tiny_model_path, True, [2, 4, 8])
    proc = run_lem("run", str(study), "-o", str(tmp_path / "r"), timeout=600)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (study_dir,) = (tmp_path / "r").iterdir()
    runs = _results(study_dir)
    assert len(runs) == 3
    engines = [r["engine"] for _, r in runs]
    assert [e["fresh"] for e in engines] == [True, False, False]
    assert [e["runs_served"] for e in engines] == [0, 1, 2]
    assert len({e["server_pid"] for e in engines}) == 1 and len({e["pid"] for e in engines}) == 1
    assert len({e["identity"] for e in engines}) == 1 and engines[0]["session"]
    assert all(e["reset"] == [] for e in engines)  # transformers' server keeps nothing between requests
    first, *later = [r for _, r in runs]
    # the start-up is the first run's (its load); later runs started nothing: 0 and null, engine.load_s keeps it
    assert first["serving"]["server_start_s"] > 0 and first["model_load_s"] == first["serving"]["server_start_s"]
    assert all(r["model_load_s"] == 0 and r["serving"]["server_start_s"] is None for r in later)
    assert all(r["engine"]["load_s"] == first["engine"]["load_s"] > 0 for r in later)
    # each run is its own measurement: its rate, its requests, its warmup
    assert [r["serving"]["offered_rate_rps"] for _, r in runs] == [2.0, 4.0, 8.0]
    assert all(r["serving"]["n_ok"] == 6 and r["output_tokens"] == 24 for _, r in runs)
    assert all(r["warmup"]["batches"] == 1 for _, r in runs)
    assert all(r["batch_size"] == 32 and r["config"]["pytorch"]["batch_size"] == 32 for _, r in runs)
    # each folder has the server's log for its own run: the start-up in the first only
    logs = [(d / "server.log").read_text() for d, _ in runs]
    assert "continuous batching ready" in logs[0] and all("continuous batching ready" not in lg for lg in logs[1:])
    assert _server_pids(str(tiny_model_path)) == []  # stopped when the session closed


def test_engine_reuse_false_starts_a_server_per_rate_point(tmp_path, tiny_model_path):
    study = _rates_study(tmp_path, tiny_model_path, False, [2, 8])
    proc = run_lem("run", str(study), "-o", str(tmp_path / "r"), timeout=600)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (study_dir,) = (tmp_path / "r").iterdir()
    engines = [r["engine"] for _, r in _results(study_dir)]
    assert [e["fresh"] for e in engines] == [True, True]
    assert len({e["server_pid"] for e in engines}) == 2 and all(e["session"] is None for e in engines)
    assert _server_pids(str(tiny_model_path)) == []


def _request(tmp_path: Path, model: Path, n: int, rate: int) -> RunRequest:
    cfg = ExperimentConfig.model_validate({
        "name": f"kept-{n}", "model": str(model), "scenario": "serving", "device": "cpu", "dtype": "float32",
        "max_output_tokens": 4, "force_output_length": True,
        "serving": {"arrival": "constant", "rate": rate, "n_requests": 4, "warmup_requests": 1,
                    "input_tokens": {"dist": "fixed", "value": 8}},
        "energy": {"baseline": {"mode": "off"}}})
    (tmp_path / f"run{n}").mkdir()  # the controller makes each run's folder before handing the run over
    return RunRequest(experiment_id=f"kept-{n}", config=cfg, model_path=str(model), out_dir=str(tmp_path / f"run{n}"))


def _wait(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, f"runner exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
        assert time.monotonic() - t0 < timeout, f"no {path} after {timeout} s"
        time.sleep(0.2)


def test_a_kept_server_killed_between_runs_is_replaced_and_the_next_run_measured_on_a_fresh_one(tmp_path,
                                                                                                tiny_model_path):
    """The runner's session protocol driven directly: run 1 starts a server; the server is SIGKILLed while the
    session waits; run 2 must not fail (nor be measured on a dead server): it starts a new one and says fresh."""
    session = tmp_path / "session"
    session.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "lem_runner", "--session", str(session)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        (session / session_request_file(1)).write_text(_request(tmp_path, tiny_model_path, 1, 4).model_dump_json())
        _wait(tmp_path / "run1" / RESULT_FILE, proc)
        one = json.loads((tmp_path / "run1" / RESULT_FILE).read_text())["engine"]
        assert one["fresh"] and _server_pids(str(tiny_model_path)) == [one["server_pid"]]
        os.kill(one["server_pid"], signal.SIGKILL)
        time.sleep(0.5)
        (session / session_request_file(2)).write_text(_request(tmp_path, tiny_model_path, 2, 8).model_dump_json())
        _wait(tmp_path / "run2" / RESULT_FILE, proc)
        two = json.loads((tmp_path / "run2" / RESULT_FILE).read_text())
        assert two["engine"]["fresh"] and two["engine"]["runs_served"] == 0
        assert two["engine"]["server_pid"] != one["server_pid"] and two["engine"]["pid"] == one["pid"]
        assert two["serving"]["n_ok"] == 4 and two["serving"]["server_start_s"] > 0
        assert not (tmp_path / "run2" / "error.json").exists()
        (session / SESSION_END_FILE).write_text("")
        assert proc.wait(60) == 0
        assert _server_pids(str(tiny_model_path)) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
