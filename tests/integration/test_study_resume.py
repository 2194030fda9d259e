"""Studies that survive their controller, end to end: the real `lem` CLI as a process, real runner subprocesses on the
tiny model, real signals (SIGKILL of the whole `lem` process group, SIGINT), real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import llenergymeasure as lem
import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import RESULT_FILE
from llenergymeasure.errors import ConfigError

FAST = """\
  n_prompts: 2
  max_output_tokens: 3
  force_output_length: true
  warmup:
    n_batches: 0
"""


def _study_2x2(tmp_path: Path, model: Path, name: str = "kill", extra: str = "") -> Path:
    return write_yaml(tmp_path / f"{name}.yaml", f"""\
name: {name}
n_cycles: 2
order: latin_square
base:
  model: {model}
{FAST}{extra}sweep:
  pytorch.batch_size: [1, 2]
  max_input_tokens: [32, 64]
""")


def _start_lem(*args: str, log: Path) -> subprocess.Popen:
    """`lem` in its own process group (as a shell would start it), SIGINT at its default (Python's handler)."""
    return subprocess.Popen(
        [sys.executable, "-m", "llenergymeasure", *args], stdin=subprocess.DEVNULL, stdout=log.open("w"),
        stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "COLUMNS": "200"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _manifest(out: Path) -> dict | None:
    found = list(out.glob("*/manifest.json"))
    if not found:
        return None
    try:
        return json.loads(found[0].read_text())
    except ValueError:  # never happens with atomic writes; kept so a failure would show as the assert below
        return None


def _wait_for(out: Path, proc: subprocess.Popen, ready, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = _manifest(out)
        if m is not None and ready(m):
            return m
        assert proc.poll() is None, f"lem ended early with {proc.returncode}"
        time.sleep(0.1)
    raise AssertionError("the study never reached the awaited state")


def _runner_processes(study_dir: Path) -> list[int]:
    """Runner processes working in this study's folder (read from /proc)."""
    pids = []
    for proc_dir in Path("/proc").iterdir():
        if proc_dir.name.isdigit():
            try:
                cmd = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "lem_runner" in cmd and str(study_dir) in cmd:
                pids.append(int(proc_dir.name))
    return pids


def _result_dirs(study_dir: Path) -> list[Path]:
    return [p for p in study_dir.iterdir() if p.is_dir() and (p / RESULT_FILE).is_file()]


def test_sigkill_mid_study_then_resume_gives_exactly_8_results_and_a_summary(tmp_path, tiny_model_path):
    # each run lasts 3 s (a windowed run), so the kill, ~0.6 s after a run is seen starting, lands inside it: a run
    # of 2 prompts x 3 tokens on a reused engine ends in well under 0.5 s, and a kill between runs cuts none
    study = _study_2x2(tmp_path, tiny_model_path, extra="  window: {mode: windowed, duration_s: 3}\n")
    out = tmp_path / "r"
    proc = _start_lem("run", str(study), "-o", str(out), log=tmp_path / "first.log")
    # at least one run done and the next one's runner at work: the kill lands mid-run
    _wait_for(out, proc, lambda m: any(e["status"] == "done" for e in m["entries"])
              and any(e["status"] == "running" and e["result_path"] for e in m["entries"]))
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    (study_dir,) = out.iterdir()
    before = json.loads((study_dir / "manifest.json").read_text())
    done_before = {e["run"]: e["result_path"] for e in before["entries"] if e["status"] == "done"}
    assert done_before and before["status"] == "running"
    (cut,) = [e for e in before["entries"] if e["status"] == "running"]
    deadline = time.monotonic() + 10  # the kernel kills the runner with its controller (no orphan measuring on)
    while _runner_processes(study_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _runner_processes(study_dir) == []

    resumed = run_lem("run", str(study), "-o", str(out), "--resume", timeout=400)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    m = json.loads((study_dir / "manifest.json").read_text())
    assert m["status"] == "complete" and [e["status"] for e in m["entries"]] == ["done"] * 8
    assert {e["run"]: e["result_path"] for e in m["entries"] if e["run"] in done_before} == done_before  # kept
    assert m["entries"][cut["run"] - 1]["attempts"] == 2
    results = _result_dirs(study_dir)
    assert len(results) == 8 and len([p for p in study_dir.iterdir() if p.is_dir()]) == 8
    ids = Counter((json.loads((p / RESULT_FILE).read_text())["config"]["name"]) for p in results)
    assert sorted(ids) == sorted(e["name"] for e in m["entries"]) and set(ids.values()) == {1}  # none twice
    assert len(m["sessions"]) == 2 and m["controller_overhead_s_per_experiment"] is not None

    summary = json.loads((study_dir / "study_summary.json").read_text())
    assert summary["planned"] == 8 and summary["finished"] == 8 and summary["failed"] == 0
    assert len(summary["aggregates"]) == 4
    for agg in summary["aggregates"]:
        tps = agg["output_tokens_per_second"]
        assert agg["n_ok"] == 2 and tps["n"] == 2 and tps["mean"] > 0
        assert tps["std"] is not None and tps["ci95"] is not None and tps["cv"] is not None
    assert "controller overhead" in resumed.stdout and "finished before" in resumed.stdout
    assert "was cut off: it runs again" in resumed.stdout


def test_a_point_whose_runner_crashes_is_failed_and_the_rest_complete(tmp_path, tiny_model_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')  # passes the controller's check, no weights
    study = write_yaml(tmp_path / "crash.yaml", f"""\
name: crash
base:
  model: {tiny_model_path}
{FAST}experiments:
  - {{}}
  - model: {broken}
  - pytorch: {{batch_size: 2}}
""")
    out = tmp_path / "r"
    proc = run_lem("run", str(study), "-o", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    (study_dir,) = out.iterdir()
    m = json.loads((study_dir / "manifest.json").read_text())
    assert m["status"] == "complete"
    # engine reuse (the default) puts the two runs on the tiny model together: they share one engine
    # (a point whose model folder does not exist is refused before the study starts: tests/integration/
    # test_validate_like_run.py)
    assert [e["point"] for e in m["entries"]] == [0, 2, 1]
    assert [(e["status"], e["reason"]) for e in m["entries"]] == [
        ("done", None), ("done", None), ("failed", "runner_error")]
    assert "during load" in m["entries"][2]["error"]
    assert (study_dir / m["entries"][2]["result_path"] / "error.json").is_file()
    assert len(_result_dirs(study_dir)) == 2
    summary = json.loads((study_dir / "study_summary.json").read_text())
    assert summary["failed"] == 1 and summary["finished"] == 3
    assert "failed" in proc.stdout and "runner_error" in proc.stdout
    assert "1 run(s) failed; to run them again:" in proc.stdout and "--retry-failed" in proc.stdout


def test_sigint_exits_130_resumable_and_resume_finishes(tmp_path, tiny_model_path):
    study = write_yaml(tmp_path / "int.yaml", f"""\
name: int
n_cycles: 2
base:
  model: {tiny_model_path}
{FAST}""")
    out = tmp_path / "r"
    log = tmp_path / "int.log"
    proc = _start_lem("run", str(study), "-o", str(out), log=log)
    _wait_for(out, proc, lambda m: any(e["status"] == "running" and e["result_path"] for e in m["entries"]))
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130, log.read_text()
    text = log.read_text()
    assert "--resume" in text and "Traceback" not in text
    (study_dir,) = out.iterdir()
    m = json.loads((study_dir / "manifest.json").read_text())
    assert m["status"] == "interrupted" and "running" not in {e["status"] for e in m["entries"]}
    assert m["entries"][0]["status"] == "pending" and m["entries"][0]["result_path"] is None
    assert [p for p in study_dir.iterdir() if p.is_dir()] == []  # the stopped run's folder is not a result

    resumed = run_lem("run", str(study), "-o", str(out), "--resume", str(study_dir))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(_result_dirs(study_dir)) == 2


def test_timeout_kills_the_runner_and_records_timeout(tmp_path, tiny_model_path):
    study = write_yaml(tmp_path / "slow.yaml", f"""\
name: slow
experiment_timeout_s: 0.5
base:
  model: {tiny_model_path}
{FAST}""")
    out = tmp_path / "r"
    start = time.monotonic()
    proc = run_lem("run", str(study), "-o", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert time.monotonic() - start < 60
    (study_dir,) = out.iterdir()
    (entry,) = json.loads((study_dir / "manifest.json").read_text())["entries"]
    assert entry["status"] == "failed" and entry["reason"] == "timeout" and entry["runner_s"] < 5
    assert _runner_processes(study_dir) == []


def test_bad_resume_requests_exit_2_with_one_line(tmp_path, tiny_model_path, tiny_config):
    study = _study_2x2(tmp_path, tiny_model_path, name="nores")
    out = tmp_path / "r"
    none_yet = run_lem("run", str(study), "-o", str(out), "--resume")
    assert none_yet.returncode == 2 and "no unfinished study named 'nores'" in none_yet.stderr
    not_study = run_lem("run", str(tiny_config), "-o", str(out), "--resume")
    assert not_study.returncode == 2 and "--resume: only for a study file" in not_study.stderr
    missing = run_lem("run", str(study), "-o", str(out), "--resume", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    for proc in (none_yet, not_study, missing):
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_resume_with_a_changed_study_is_refused(tmp_path, tiny_model_path):
    gone = tmp_path / "gone"  # a model folder that validates (config.json) but holds no weights: its runs fail
    gone.mkdir()
    (gone / "config.json").write_text('{"model_type": "llama", "vocab_size": 512}')
    study = write_yaml(tmp_path / "ch.yaml", f"""\
name: ch
max_consecutive_failures: 1
base:
  model: {gone}
{FAST}sweep:
  pytorch.batch_size: [1, 2]
""")
    out = tmp_path / "r"
    first = run_lem("run", str(study), "-o", str(out))  # the first run fails (no model): breaker stops it at once
    assert first.returncode == 1 and "resume with" in first.stdout
    changed = run_lem("run", str(study), "-o", str(out), "--resume", "--n-prompts", "3")
    assert changed.returncode == 2 and "different study config" in changed.stderr


def test_run_study_api_returns_the_study(tmp_path, tiny_model_path):
    result = lem.run_study({"name": "api", "n_cycles": 2, "order": "shuffle", "seed": 3,
                            "base": {"model": str(tiny_model_path), "n_prompts": 2, "max_output_tokens": 3,
                                     "force_output_length": True, "warmup": {"n_batches": 0}}},
                           output=tmp_path / "r")
    assert isinstance(result, lem.StudyResult) and result.status == "complete" and result.failed == 0
    assert [e.status for e in result.entries] == ["done", "done"] and len(result.results) == 2
    (point,) = result.summaries
    assert point.n_ok == 2 and point.metrics["output_tokens_per_second"].ci95 is not None
    assert (result.study_dir / "manifest.json").is_file() and result.controller_overhead_s_per_experiment >= 0
    with pytest.raises(ConfigError, match="n_cycles"):
        lem.run_study({"n_cycles": 0, "base": {}}, output=tmp_path / "r")
