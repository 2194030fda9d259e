"""Interrupted is not failed: a real `lem run` subprocess stopped by a real signal (Ctrl-C's SIGINT, SIGTERM, SIGHUP),
by a reader that went away (`lem run … | head`: EPIPE) or killed outright. The folder is kept and reads as
interrupted (or incomplete) in `results list` and `results show`; nothing measured is passed off as a result."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import RunError


@pytest.fixture
def long_config(tmp_path, tiny_model_path):
    return write_yaml(tmp_path / "long.yaml", f"name: long\nmodel: {tiny_model_path}\nn_prompts: 2000\n"
                                              "max_output_tokens: 32\nforce_output_length: true\n"
                                              "warmup:\n  n_batches: 0\n")


def _start(cfg, out) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "llenergymeasure", "run", str(cfg), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, "COLUMNS": "200"})


def _wait_until_measuring(proc: subprocess.Popen, n: int = 3) -> list[str]:
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if sum(ln.strip().startswith("measuring") for ln in seen) >= n:  # a few requests are done in the window
            return seen
    pytest.fail(f"lem ended before measuring: {proc.stderr.read()}")


def _only_dir(root):
    (d,) = [p for p in root.iterdir() if p.is_dir()]
    return d


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_stops_the_run_as_interrupted_not_failed(tmp_path, long_config, sig):
    out = tmp_path / "r"
    proc = _start(long_config, out)
    seen = _wait_until_measuring(proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout
    # the controller stops its runner with SIGINT whatever stopped the controller
    # said once, on stderr's last line, not also as a progress line (issue 26: Ctrl-C printed its line twice)
    assert "runner error" not in stdout and "stopped during measure" not in stdout, stdout
    # a long run shows how long it has left; the load time reads once, not "model loaded: model loaded in"
    assert re.fullmatch(r"\s*measuring 3/2000 · \d+ s elapsed · eta \d+(\.\d)? (s|min|h)\s*", seen[-1]), seen[-1]
    assert any(re.fullmatch(r"\s*model loaded: in \d+\.\d s\s*", ln) for ln in seen), seen
    cause = "Ctrl-C (SIGINT)" if sig == signal.SIGINT else sig.name
    (line,) = [ln for ln in stderr.splitlines() if ln.strip()]  # one clean line
    assert line.startswith(f"error: interrupted by {cause}: runner stopped during measure after "), line
    assert "measured requests; their partial measurement was dropped" in line and "marked interrupted" in line
    exp = _only_dir(out)
    err = RunError.model_validate_json((exp / "error.json").read_text())
    assert err.status == "interrupted" and err.phase == "measure" and err.message.strip()
    assert err.requests_done is not None and 3 <= err.requests_done < 2000
    assert not (exp / "result.json").exists()

    listed = run_lem("results", "list", str(out))
    flat = " ".join(listed.stdout.split())  # a long reason continues on the next line rather than being cut
    assert listed.returncode == 0 and "interrupted: measure: SIGINT: stopped during measure after" in flat, listed.stdout
    assert "failed" not in listed.stdout
    shown = run_lem("results", "show", str(exp))
    assert shown.returncode == 0 and "interrupted" in shown.stdout and "failed" not in shown.stdout, shown.stdout


def test_a_closed_stdout_stops_the_run_like_sigpipe(tmp_path, long_config):
    """`lem run … | head`: the reader exits; lem's next write fails with EPIPE (Python ignores SIGPIPE itself)."""
    out = tmp_path / "r"
    proc = _start(long_config, out)
    _wait_until_measuring(proc)
    proc.stdout.close()
    stderr = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert "interrupted by SIGPIPE (stdout closed): runner stopped during measure" in stderr
    err = RunError.model_validate_json((_only_dir(out) / "error.json").read_text())
    assert err.status == "interrupted"


def test_a_killed_lem_leaves_a_folder_listed_as_incomplete(tmp_path, long_config):
    out = tmp_path / "r"
    proc = _start(long_config, out)
    _wait_until_measuring(proc, n=1)
    proc.kill()  # nothing can be written: the runner dies with it (PDEATHSIG)
    proc.communicate(timeout=60)
    exp = _only_dir(out)
    assert not (exp / "error.json").exists() and not (exp / "result.json").exists()
    listed = run_lem("results", "list", str(out))
    assert listed.returncode == 0 and "incomplete" in listed.stdout and exp.name in listed.stdout, listed
    shown = run_lem("results", "show", str(exp))
    assert shown.returncode == 0 and "incomplete" in shown.stdout, shown.stdout + shown.stderr
    assert "stopped before it could write" in shown.stdout


def _ignoring_stop_signals() -> None:
    """What `nohup lem run … &` from a script hands down: SIGHUP (nohup) and SIGINT (a background job) ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def test_a_lem_started_with_stop_signals_ignored_still_stops_its_runner(tmp_path, long_config):
    """The runner inherits SIG_IGN for SIGINT through exec, and Python then installs no KeyboardInterrupt: the
    controller's graceful stop (SIGINT to its runner) went unheard until the runner takes SIGINT itself (a CI run
    started with nohup failed every signal test on it)."""
    out = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "llenergymeasure", "run", str(long_config), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, "COLUMNS": "200"}, preexec_fn=_ignoring_stop_signals)
    _wait_until_measuring(proc)
    proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    err = RunError.model_validate_json((_only_dir(out) / "error.json").read_text())
    assert err.status == "interrupted" and err.phase == "measure"
