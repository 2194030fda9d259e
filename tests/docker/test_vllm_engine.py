"""The real vLLM engine in its CPU image: the default config runs (eager on CPU, recorded), and an engine whose
worker dies (the compile path forced on: the image has no C++ compiler) fails the run within seconds with the
worker's own error in error.json — not at the controller's silence timeout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from conftest import write_yaml
from lem_runner.contract import ExperimentResult, RunError

pytestmark = pytest.mark.docker


def _run(cfg, out, *extra) -> tuple[subprocess.CompletedProcess, float | None, float]:
    """`lem run`, timing from the runner's 'started' line to its exit."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "llenergymeasure", "run", str(cfg), "-o", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, "COLUMNS": "200"})
    started = None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if started is None and line.strip().startswith("started:"):
            started = time.monotonic()
    stderr = proc.stderr.read()
    proc.wait(timeout=60)
    ended = time.monotonic()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines), stderr)
    return done, (ended - started) if started else None, ended - t0


def test_the_default_vllm_config_runs_in_the_cpu_image_eagerly(tmp_path, tiny_model_path, vllm_cpu_image):
    cfg = write_yaml(tmp_path / "v.yaml", f"model: {tiny_model_path}\nbackend: vllm\nn_prompts: 4\n"
                                          "max_output_tokens: 4\nforce_output_length: true\nwarmup: {n_batches: 0}\n")
    # vLLM is not installed on the host, so `runner: auto` isolates it without being asked (no --isolated here)
    proc, _, _ = _run(cfg, tmp_path / "r")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (exp,) = (tmp_path / "r").iterdir()
    r = ExperimentResult.model_validate_json((exp / "result.json").read_text())
    assert r.environment.image == vllm_cpu_image.image_id
    assert r.config.vllm.enforce_eager is None  # not set in the config ...
    assert r.backend_details["enforce_eager"] is True  # ... eager on CPU, and the result says why
    assert "C++ compiler" in r.backend_details["enforce_eager_source"]
    assert r.output_tokens == 16


def test_a_dead_engine_worker_fails_the_run_within_seconds_with_its_error(tmp_path, tiny_model_path, vllm_cpu_image):
    cfg = write_yaml(tmp_path / "v.yaml", f"model: {tiny_model_path}\nbackend: vllm\nn_prompts: 4\n"
                                          "max_output_tokens: 4\nwarmup: {n_batches: 0}\n"
                                          "vllm:\n  enforce_eager: false\n")  # compile: the worker dies
    proc, runner_s, total_s = _run(cfg, tmp_path / "r", "--isolated", "--silence-timeout", "600")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (exp,) = (tmp_path / "r").iterdir()
    err = RunError.model_validate_json((exp / "error.json").read_text())
    assert err.phase == "load" and err.error_type == "EngineDied", err
    assert "InvalidCxxCompiler" in err.message, err.message
    assert "InvalidCxxCompiler" in proc.stderr  # the one-line error names the cause too
    # error.json within 60 s of the engine's first error line (vLLM stamps its log lines, MM-DD HH:MM:SS, UTC in the
    # container), not at the 600 s silence timeout
    log = (exp / "runner.log").read_text(encoding="utf-8", errors="replace")
    stamp = re.search(r"ERROR (\d\d-\d\d \d\d:\d\d:\d\d)", log)
    assert stamp, log[-2000:]
    written = datetime.fromtimestamp((exp / "error.json").stat().st_mtime, UTC)
    first_error = datetime.strptime(f"{written.year}-{stamp.group(1)}", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    gap = (written - first_error).total_seconds()
    assert -2 <= gap < 60, (gap, runner_s, total_s)
    print(f"dead engine: error.json {gap:.1f} s after its first error; runner {runner_s:.1f} s, lem {total_s:.1f} s")
