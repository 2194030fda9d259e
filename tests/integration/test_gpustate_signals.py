"""The GPU operating point with real processes and real signals (the device is a FakeGpu whose state lives in a
file both processes see): a lem stopped by Ctrl-C or SIGTERM restores the GPU before it exits; one killed by SIGKILL
leaves its restore journal, and the next lem restores the GPU from it and says so; a lem that finds the journal of a
live one leaves that GPU alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_lem
from fakes import fake_gpu_opener
from lem_runner.contract import GpuConfig
from llenergymeasure.errors import SetupError
from llenergymeasure.gpustate import operating_point, recover_stale
from llenergymeasure.gpustate.apply import restore_host
from llenergymeasure.gpustate.journal import host_journals, new_journal, read_journal, write_journal

DEFAULT = {"power_limit_w": 700.0, "sm_lock": None, "mem_lock": None, "persistence": False}
HELD = {"power_limit_w": 300.0, "sm_lock": [1200, 1200], "mem_lock": None, "persistence": False}


def _state(tmp_path: Path) -> dict:
    s = json.loads((tmp_path / "state" / "gpu-0.json").read_text())
    return {k: s[k] for k in DEFAULT}


def _holder(tmp_path: Path) -> subprocess.Popen:
    """A separate process holding power limit 300 W and SM clock 1200 MHz on fake GPU 0 (prints 'ready' once set)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "gpustate_holder", str(tmp_path / "state"), str(tmp_path / "locks")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline().strip()
    assert line == "ready", proc.stderr.read() if proc.poll() is not None else line
    return proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_restores_the_gpu(tmp_path, sig):
    holder = _holder(tmp_path)
    try:
        assert _state(tmp_path) == HELD and len(host_journals(tmp_path / "locks")) == 1
        holder.send_signal(sig)
        assert holder.wait(timeout=20) == 130
    finally:
        holder.kill()
    assert holder.stdout.read().strip() == "interrupted"
    assert _state(tmp_path) == DEFAULT
    assert host_journals(tmp_path / "locks") == []


def test_a_sigkilled_lem_leaves_a_journal_and_the_next_one_restores_from_it(tmp_path):
    holder = _holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=20)
    (path,) = host_journals(tmp_path / "locks")
    journal = read_journal(path)
    assert journal.pid == holder.pid and not journal.writer_alive
    assert _state(tmp_path) == HELD  # nothing could restore it: SIGKILL runs no code

    notes: list[str] = []
    with operating_point(GpuConfig(), ["0"], fake_gpu_opener(tmp_path / "state"), notes.append,
                         tmp_path / "locks") as settings:
        assert settings == [] and _state(tmp_path) == DEFAULT  # restored before this run measured anything
    (line,) = notes
    assert line.startswith(f"GPU 0: restored from the journal left by pid {holder.pid} ")
    assert line.endswith("SM clock lock reset, power limit back to 700 W")
    assert host_journals(tmp_path / "locks") == []


def test_a_second_lem_respects_a_journal_it_did_not_write(tmp_path):
    holder = _holder(tmp_path)
    try:
        opener = fake_gpu_opener(tmp_path / "state")
        # recovery leaves a live writer's journal alone
        live = recover_stale(["0"], opener, lambda _l: pytest.fail("nothing to say"), tmp_path / "locks")
        assert [j.pid for j in live] == [holder.pid]
        # a run that wants its own operating point on that GPU is refused, and changes nothing
        with pytest.raises(SetupError, match=rf"GPU 0: another lem holds its operating point \(pid {holder.pid} "), \
                operating_point(GpuConfig(power_limit_w=500), ["0"], opener, None, tmp_path / "locks"):
            pytest.fail("the block must not run")
        assert _state(tmp_path) == HELD
        # a run that asks for nothing measures under it, and is told so
        notes: list[str] = []
        with operating_point(GpuConfig(), ["0"], opener, notes.append, tmp_path / "locks"):
            assert _state(tmp_path) == HELD
        assert notes and "held by another lem" in notes[0]
        assert len(host_journals(tmp_path / "locks")) == 1
        holder.send_signal(signal.SIGINT)
        assert holder.wait(timeout=20) == 130
    finally:
        holder.kill()
    assert _state(tmp_path) == DEFAULT and host_journals(tmp_path / "locks") == []


def test_doctor_restore_gpu_reports_what_it_could_not_restore(tmp_path):
    """The real CLI with a journal a dead lem left: here NVML is missing, so the GPU cannot be put back; it says so in
    one line, exit 3, and keeps the journal for a later try."""
    journal = new_journal("0", "GPU-x", ["power_limit"], 700.0, None)
    journal.pid, journal.pid_start = 2**22 + 4321, None  # no such process
    path = write_journal(journal, tmp_path / "locks")
    out = run_lem("doctor", "--restore-gpu", env={"LEM_LOCK_DIR": str(tmp_path / "locks")}, timeout=120)
    assert out.returncode == 3, out.stdout + out.stderr
    assert out.stderr.strip().startswith(f"error: GPU 0: restoring from {path} failed: ")
    assert "Traceback" not in out.stderr and path.exists()
    empty = run_lem("doctor", "--restore-gpu", env={"LEM_LOCK_DIR": str(tmp_path / "none")}, timeout=120)
    assert empty.returncode == 0 and "nothing to restore" in empty.stdout


def test_doctor_restore_gpu_restores_what_a_sigkilled_lem_left(tmp_path):
    holder = _holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=20)
    done, failed = restore_host(fake_gpu_opener(tmp_path / "state"), tmp_path / "locks")
    assert failed == [] and len(done) == 1 and f"left by pid {holder.pid} " in done[0]
    assert _state(tmp_path) == DEFAULT and host_journals(tmp_path / "locks") == []


def test_lem_run_restores_a_dead_lems_journal_first_or_stops(tmp_path):
    """The real CLI on a GPU config, with a journal a killed lem left on GPU 0: `lem run` tries to restore the GPU
    before anything else; here NVML is missing, so it stops with one line (exit 3) and keeps the journal."""
    journal = new_journal("0", "GPU-x", ["power_limit"], 700.0, None)
    journal.pid, journal.pid_start = 2**22 + 777, None  # no such process
    path = write_journal(journal, tmp_path / "locks")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    cfg = tmp_path / "gpu.yaml"
    cfg.write_text(f"model: {model}\ndevice: cuda\nn_prompts: 1\nmax_output_tokens: 2\n")
    out = run_lem("run", str(cfg), "-o", str(tmp_path / "r"), env={"LEM_LOCK_DIR": str(tmp_path / "locks")},
                  timeout=120)
    assert out.returncode == 3, out.stdout + out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: GPU 0: a journal left by pid {journal.pid} ") and "restoring it failed" in last
    assert "Traceback" not in out.stderr and path.exists() and not (tmp_path / "r").exists()
