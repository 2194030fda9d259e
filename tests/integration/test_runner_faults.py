"""Runner faults injected for real, inside studies that must carry on: a runner that writes a truncated result.json,
one that hangs (silence timeout), one whose model folder vanishes after the controller checked it, one that runs
out of disk space (a real, tiny tmpfs filled to the last byte), and one killed by SIGKILL from outside (the OOM
killer's signal). Each run ends failed with its cause in the manifest, the other runs finish, no half-written file is
read as a result, and no runner process is left behind (checked in /proc).

The faults go in through a stand-in for the runner's Python interpreter (the real LocalLauncher starts
``<python> -m lem_runner --config … --out …``): a script that looks up the run's seed and either execs the real runner
untouched, or wraps it with the fault. Everything else is real: the controller, the runner, the tiny model, files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ERROR_FILE, RESULT_FILE
from llenergymeasure.launchers import Timeouts
from llenergymeasure.launchers.base import LaunchSpec
from llenergymeasure.launchers.local import LocalLauncher
from llenergymeasure.options import RunOptions
from llenergymeasure.results import FileResultsRepository
from llenergymeasure.results.repository import CorruptResult
from llenergymeasure.study import execute_study, expand_study, load_study

SHIM = r'''#!{python}
"""Stand-in interpreter: runs the real runner, with the fault its run's seed selects (LEM_TEST_FAULTS)."""
import json, os, subprocess, sys, time
from pathlib import Path

args = sys.argv[1:]
request = json.loads(Path(args[args.index("--config") + 1]).read_text())
out = Path(args[args.index("--out") + 1])
fault = json.loads(os.environ["LEM_TEST_FAULTS"]).get(str(request["config"]["seed"]))
real = [sys.executable, *args]

if fault is None:
    os.execv(sys.executable, real)
if fault == "hang":                       # alive, silent, never finishing
    time.sleep(3600)
if fault == "vanish":                     # the model folder disappears after the controller checked it
    model = Path(request["model_path"])
    model.rename(model.with_name(model.name + "-gone"))
    os.execv(sys.executable, real)
if fault == "truncate":                   # the runner finishes, then its result.json loses its second half
    code = subprocess.call(real)
    result = out / "result.json"
    data = result.read_bytes()
    result.write_bytes(data[: len(data) // 2])
    sys.exit(code)
if fault == "diskfull":                   # fill the filesystem to the last byte, run the runner, then free it
    ballast = out.parent.parent / ".ballast"
    with open(ballast, "wb", buffering=0) as fh:  # unbuffered: each write fails at once, nothing left to flush
        for size in (65536, 4096, 512, 1):
            try:
                while fh.write(b"\0" * size):
                    pass
            except OSError:
                pass
    try:
        code = subprocess.call(real)
    finally:
        ballast.unlink()
    sys.exit(code)
raise SystemExit(f"unknown fault {{fault}}")
'''

FAST = {"n_prompts": 2, "max_output_tokens": 3, "force_output_length": True, "warmup": {"n_batches": 0},
        "energy": {"baseline": {"mode": "off"}}}

#: the hung run's silence limit (its stand-in never writes a line, so this is what it runs for)
HANG_SILENCE_S = 8


def _shim(tmp_path: Path) -> Path:
    path = tmp_path / "faulty-python"
    path.write_text(SHIM.format(python=sys.executable))
    path.chmod(0o755)
    return path


def _leftovers(folder: Path) -> list[str]:
    """Processes (runner, stand-in) still working in ``folder``, from /proc."""
    found = []
    for proc_dir in Path("/proc").iterdir():
        if proc_dir.name.isdigit() and int(proc_dir.name) != os.getpid():
            try:
                cmd = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(folder) in cmd:
                found.append(f"{proc_dir.name}: {cmd}")
    return found


class _SilenceLimitFor(LocalLauncher):
    """The real local launcher with the silence limit chosen per run: a short one for the run whose runner hangs
    (silent from its first instant, so no load can make it look alive), a long one for the healthy runs, whose quiet
    spell while a loaded 2-core machine imports torch and loads the model once outlasted one limit shared by all."""

    def __init__(self, python: str, silence_s: float | None) -> None:
        super().__init__(python=python)
        self.silence_s = silence_s

    def launch(self, spec: LaunchSpec, on_event):
        return super().launch(replace(spec, timeouts=Timeouts(spec.timeouts.wall_s, self.silence_s)), on_event)


def _run_study(tmp_path: Path, study: dict, faults: dict[int, str], out: Path,
               silence_s: dict[int, float] | None = None):
    """``silence_s``: a silence limit per seed (others: 120 s, well past any healthy runner's quiet spell)."""
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps(study))
    loaded = load_study(path)
    shim = str(_shim(tmp_path))
    limits = silence_s or {}
    os.environ["LEM_TEST_FAULTS"] = json.dumps({str(k): v for k, v in faults.items()})
    try:
        return execute_study(loaded, expand_study(loaded, str(path)), output=out,
                             options=RunOptions(no_gaps=True, timeouts=Timeouts(None, 120)),
                             launcher_for=lambda point, isolated: _SilenceLimitFor(
                                 shim, limits.get(point.config.seed, 120)))
    finally:
        del os.environ["LEM_TEST_FAULTS"]


def _entries(outcome) -> dict[int, object]:
    return {outcome.points[e.point].config.seed: e for e in outcome.manifest.entries}


def _check_no_result_read(outcome, failed_seeds):
    repo = FileResultsRepository(outcome.study_dir)
    entries = _entries(outcome)
    for seed in failed_seeds:
        entry = entries[seed]
        assert entry.run not in outcome.results  # nothing of a failed run is counted
        folder = outcome.study_dir / entry.result_path
        assert not list(folder.glob(".*.tmp"))  # no temp file of an interrupted atomic write
        try:
            assert repo.load_result(folder) is None
        except CorruptResult:  # the truncated one: present, refused on read
            pass


def test_truncated_result_hang_and_vanished_model_each_fail_and_the_study_carries_on(tmp_path, tiny_model_path):
    doomed = tmp_path / "doomed-model"
    shutil.copytree(tiny_model_path, doomed)
    study = {"name": "faults", "order": "sequential", "max_consecutive_failures": 0,
             "base": {"model": str(tiny_model_path), **FAST},
             "experiments": [{"seed": 1}, {"seed": 2}, {"seed": 3}, {"seed": 4, "model": str(doomed)}, {"seed": 5}]}
    out = tmp_path / "r"
    start = time.monotonic()
    # only the hung run gets a short silence limit: one limit for all had to outlast a loaded machine's quiet spell
    # while a healthy runner imports torch (20 s was not always enough at load 15), so a healthy run could be
    # stopped as silent
    outcome = _run_study(tmp_path, study, {2: "truncate", 3: "hang", 4: "vanish"}, out, silence_s={3: HANG_SILENCE_S})
    entries = _entries(outcome)

    assert outcome.status == "complete"
    assert [entries[s].status for s in (1, 5)] == ["done", "done"], [entries[s].error for s in (1, 5)]
    assert (entries[2].status, entries[2].reason) == ("failed", "corrupt_result")
    assert "result.json: not a valid ExperimentResult" in entries[2].error
    assert (entries[3].status, entries[3].reason) == ("failed", "silence")
    assert HANG_SILENCE_S - 1 < entries[3].runner_s < HANG_SILENCE_S + 40
    assert (entries[4].status, entries[4].reason) == ("failed", "runner_error")
    assert "during load" in entries[4].error and str(doomed) in entries[4].error
    assert set(outcome.results) == {entries[1].run, entries[5].run}
    _check_no_result_read(outcome, [2, 3, 4])
    assert (outcome.study_dir / entries[2].result_path / RESULT_FILE).is_file()  # kept for inspection, not read
    summary = json.loads((outcome.study_dir / "study_summary.json").read_text())
    assert summary["failed"] == 3 and summary["finished"] == 5
    assert _leftovers(tmp_path) == []
    assert time.monotonic() - start < 240


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 8 MiB tmpfs (needs root and mount permission; skipped where the machine forbids mounting)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0777", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_fails_that_run_with_its_cause_and_the_study_carries_on(tmp_path, tiny_model_path, tiny_disk):
    study = {"name": "disk", "order": "sequential", "max_consecutive_failures": 0,
             "base": {"model": str(tiny_model_path), **FAST}, "experiments": [{"seed": 1}, {"seed": 2}, {"seed": 3}]}
    outcome = _run_study(tmp_path, study, {2: "diskfull"}, tiny_disk / "results")
    entries = _entries(outcome)
    assert outcome.status == "complete"
    assert [entries[s].status for s in (1, 3)] == ["done", "done"], [e.error for e in entries.values()]
    assert (entries[2].status, entries[2].reason) == ("failed", "crashed")
    assert "No space left on device" in entries[2].error  # the cause, though no error.json could be written
    folder = outcome.study_dir / entries[2].result_path
    assert not (folder / ERROR_FILE).exists() and not (folder / RESULT_FILE).exists()
    _check_no_result_read(outcome, [2])
    assert not (tiny_disk / ".ballast").exists()
    assert _leftovers(tmp_path) == []


def test_lem_on_a_full_disk_says_so_in_one_line(tmp_path, tiny_model_path, tiny_disk):
    """The controller's own writes fail (the results folder's disk is full): one line, no traceback, exit 1."""
    cfg = write_yaml(tmp_path / "c.yaml", f"model: {tiny_model_path}\nn_prompts: 1\nmax_output_tokens: 2\n")
    with open(tiny_disk / "ballast", "wb", buffering=0) as fh:
        for size in (65536, 4096, 512, 1):
            try:
                while fh.write(b"\0" * size):
                    pass
            except OSError:
                pass
    proc = run_lem("run", str(cfg), "-o", str(tiny_disk / "results"), timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "Traceback" not in text
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "No space left on device" in lines[0], text
    assert not list((tiny_disk / "results").rglob(RESULT_FILE))


def test_a_runner_killed_by_sigkill_fails_its_run_and_the_study_carries_on(tmp_path, tiny_model_path):
    """The real `lem` process runs the study; the test SIGKILLs run 2's runner from outside, as the OOM killer would."""
    study = write_yaml(tmp_path / "oom.yaml", json.dumps({
        "name": "oom", "order": "sequential", "max_consecutive_failures": 0,
        "base": {"model": str(tiny_model_path), **FAST, "n_prompts": 2, "max_output_tokens": 4},
        "experiments": [{"seed": 1}, {"seed": 2}, {"seed": 3}]}))
    out = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "llenergymeasure", "run", str(study), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    killed = None
    deadline = time.monotonic() + 180
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        for manifest in out.glob("*/manifest.json"):
            try:
                entry = json.loads(manifest.read_text())["entries"][1]
            except (ValueError, IndexError):
                continue
            if entry["status"] == "running" and entry["result_path"]:
                runners = _leftovers(manifest.parent / entry["result_path"])
                if runners:
                    time.sleep(0.3)
                    killed = int(runners[0].split(":")[0])
                    os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    output, _ = proc.communicate(timeout=240)
    assert killed is not None, output
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    (study_dir,) = out.iterdir()
    m = json.loads((study_dir / "manifest.json").read_text())
    assert [e["status"] for e in m["entries"]] == ["done", "failed", "done"] and m["status"] == "complete"
    assert m["entries"][1]["reason"] == "crashed" and "killed by SIGKILL" in m["entries"][1]["error"]
    assert not (study_dir / m["entries"][1]["result_path"] / RESULT_FILE).exists()
    assert _leftovers(tmp_path) == []
