"""Engine sessions end to end: the real `lem` CLI as a process, a real runner subprocess holding the tiny model for
several runs, real signals (SIGKILL/SIGTERM of the controller, SIGKILL of the runner), real files."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import RESULT_FILE
from test_study_resume import _manifest, _runner_processes, _start_lem, _wait_for

FAST = """\
  runner: local
  n_prompts: 2
  max_output_tokens: 3
  force_output_length: true
  warmup:
    n_batches: 0
  energy:
    baseline:
      mode: "off"
"""

#: a run that lasts 8 s on the tiny model: the kills below land ~1 s into it, and each resume measures it again in full
#: (it was 20 s: 12 s more per resume, a margin the 1 s sleep does not need)
LONG = "{window: {mode: windowed, duration_s: 8}}"


def _study(tmp_path: Path, model: Path, name: str, experiments: list[str], reuse: bool = True, cycles: int = 1) -> Path:
    items = "\n".join(f"  - {e}" for e in experiments)
    return write_yaml(tmp_path / f"{name}.yaml", f"""\
name: {name}
n_cycles: {cycles}
engine_reuse: {str(reuse).lower()}
base:
  model: {model}
{FAST}experiments:
{items}
""")


def _results(study_dir: Path) -> dict[str, dict]:
    """Result records by run folder name."""
    return {p.name: json.loads((p / RESULT_FILE).read_text()) for p in study_dir.iterdir()
            if p.is_dir() and (p / RESULT_FILE).is_file()}


def _session_runners(study_dir: Path) -> list[int]:
    return [pid for pid in _runner_processes(study_dir) if b"--session" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_a_session_writes_each_result_as_it_finishes_on_one_engine(tmp_path, tiny_model_path):
    study = _study(tmp_path, tiny_model_path, "sess", ["{}", "{pytorch: {batch_size: 2}}", "{max_output_tokens: 5}"])
    out = tmp_path / "r"
    proc = _start_lem("run", str(study), "-o", str(out), log=tmp_path / "sess.log")
    seen: dict[str, float] = {}  # result folder -> when this test first saw its result.json, complete
    while proc.poll() is None:
        for path in out.glob("*/*/" + RESULT_FILE):
            if path.parent.name not in seen:
                json.loads(path.read_text())  # atomic: never a partial file
                seen[path.parent.name] = time.time()
        time.sleep(0.05)
    assert proc.returncode == 0, (tmp_path / "sess.log").read_text()
    (study_dir,) = out.iterdir()
    m = json.loads((study_dir / "manifest.json").read_text())
    assert [e["status"] for e in m["entries"]] == ["done"] * 3
    assert len({e["engine_session"] for e in m["entries"]}) == 1 and m["entries"][0]["engine_session"]
    results = _results(study_dir)
    by_run = [results[e["result_path"]] for e in m["entries"]]
    assert [(r["engine"]["fresh"], r["engine"]["runs_served"]) for r in by_run] == [(True, 0), (False, 1), (False, 2)]
    assert len({r["engine"]["pid"] for r in by_run}) == 1  # one runner process measured all three
    assert by_run[0]["model_load_s"] > 0.05 and by_run[1]["model_load_s"] < 0.01
    assert by_run[1]["engine"]["load_s"] == by_run[0]["engine"]["load_s"]
    # each run's own settings reached the held engine
    assert by_run[1]["backend_details"]["n_batches"] == 1 and by_run[0]["backend_details"]["n_batches"] == 2
    # and the result says what the run used, not what the engine's first run did
    assert [r["batch_size"] for r in by_run] == [1, 2, 1]
    assert [r["engine_settings"]["generate"]["max_new_tokens"] for r in by_run] == [3, 3, 5]
    assert by_run[2]["whole_run"]["output_tokens"] == 2 * 5
    # each result landed (and was recorded) before the next run started: not all at the session's end
    for earlier, later in zip(m["entries"], m["entries"][1:]):
        written = (study_dir / earlier["result_path"] / RESULT_FILE).stat().st_mtime
        assert written <= datetime.fromisoformat(later["started"]).timestamp()
        assert seen[earlier["result_path"]] < seen[later["result_path"]]
    assert all((study_dir / e["result_path"] / "runner.log").is_file() for e in m["entries"])
    assert not (study_dir / ".sessions").exists()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_controller_killed_mid_session_then_resume_gives_every_run_once(tmp_path, tiny_model_path, sig):
    study = _study(tmp_path, tiny_model_path, "kill", ["{}", LONG, "{max_output_tokens: 4}", "{n_prompts: 3}"])
    out = tmp_path / "r"
    proc = _start_lem("run", str(study), "-o", str(out), log=tmp_path / "kill.log")
    _wait_for(out, proc, lambda m: m["entries"][0]["status"] == "done" and m["entries"][1]["status"] == "running"
              and m["entries"][1]["result_path"], timeout=240)
    time.sleep(1.0)  # inside run 2's 8 s window
    (study_dir,) = out.iterdir()
    assert _session_runners(study_dir), "the session's runner should be at work"
    if sig == signal.SIGKILL:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 15  # the kernel (or the graceful stop) ends the runner with its controller
    while _runner_processes(study_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _runner_processes(study_dir) == []
    before = _manifest(out)
    assert [e["status"] for e in before["entries"]][0] == "done"
    assert {e["status"] for e in before["entries"][1:]} <= {"running", "pending"}
    first = before["entries"][0]["result_path"]

    resumed = run_lem("run", str(study), "-o", str(out), "--resume", timeout=400)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    m = json.loads((study_dir / "manifest.json").read_text())
    assert m["status"] == "complete" and [e["status"] for e in m["entries"]] == ["done"] * 4
    assert m["entries"][0]["result_path"] == first  # kept, not measured again
    results = _results(study_dir)
    names = Counter(r["config"]["name"] for r in results.values())
    assert sorted(names) == sorted(e["name"] for e in m["entries"]) and set(names.values()) == {1}
    assert len([p for p in study_dir.iterdir() if p.is_dir()]) == 4  # no half-done folder, no session left over
    resumed_runs = [results[e["result_path"]] for e in m["entries"][1:]]
    assert [r["engine"]["fresh"] for r in resumed_runs] == [True, False, False]  # one new session for the rest


def test_runner_killed_mid_session_fails_that_run_and_the_rest_run_in_a_new_session(tmp_path, tiny_model_path):
    study = _study(tmp_path, tiny_model_path, "crash", ["{}", LONG, "{max_output_tokens: 4}", "{n_prompts: 3}"])
    out = tmp_path / "r"
    proc = _start_lem("run", str(study), "-o", str(out), log=tmp_path / "crash.log")
    _wait_for(out, proc, lambda m: m["entries"][1]["status"] == "running" and m["entries"][1]["result_path"],
              timeout=240)
    time.sleep(1.0)
    (study_dir,) = out.iterdir()
    (runner,) = _session_runners(study_dir)
    os.kill(runner, signal.SIGKILL)
    assert proc.wait(timeout=400) == 1, (tmp_path / "crash.log").read_text()
    m = json.loads((study_dir / "manifest.json").read_text())
    assert [e["status"] for e in m["entries"]] == ["done", "failed", "done", "done"]
    assert "SIGKILL" in m["entries"][1]["error"]
    sessions = [e["engine_session"] for e in m["entries"]]
    assert sessions[0] == sessions[1] and sessions[2] == sessions[3] and sessions[1] != sessions[2]
    results = _results(study_dir)
    after = [results[m["entries"][k]["result_path"]]["engine"] for k in (2, 3)]
    assert [(e["fresh"], e["runs_served"]) for e in after] == [(True, 0), (False, 1)]
    assert after[0]["pid"] != runner and after[0]["pid"] == after[1]["pid"]


def test_engine_reuse_false_starts_one_runner_per_run(tmp_path, tiny_model_path):
    study = _study(tmp_path, tiny_model_path, "cold", ["{}", "{max_output_tokens: 4}"], reuse=False, cycles=2)
    out = tmp_path / "r"
    proc = run_lem("run", str(study), "-o", str(out), timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (study_dir,) = out.iterdir()
    m = json.loads((study_dir / "manifest.json").read_text())
    assert m["engine_reuse"] is False and all(e["engine_session"] is None for e in m["entries"])
    engines = [r["engine"] for r in _results(study_dir).values()]
    assert len(engines) == 4 and len({e["pid"] for e in engines}) == 4
    assert all(e["fresh"] and e["runs_served"] == 0 and e["session"] is None for e in engines)
