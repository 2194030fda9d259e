"""The runner entry point ``python -m lem_runner`` as a real subprocess: fingerprint, bad requests, load failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import make_config
from lem_runner.contract.fingerprint import contract_fingerprint
from lem_runner.contract.protocol import EXIT_BAD_REQUEST, EXIT_FAILED, RunError, RunRequest, parse_event


def _runner(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "lem_runner", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _events(stdout: str):
    lines = [line for line in stdout.splitlines() if line.strip()]
    events = [parse_event(line) for line in lines]
    assert lines and all(e is not None for e in events), f"stdout has a line that is not an event:\n{stdout}"
    return events


def test_fingerprint_matches_the_contract(tmp_path):
    proc = _runner("--fingerprint", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.strip() == contract_fingerprint()


def test_config_and_out_are_required(tmp_path):
    proc = _runner("--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "--config and --out are required" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "No such file or directory"),
        (b"not json at all", "validation error for RunRequest"),
        (json.dumps({"experiment_id": "e", "config": {"n_prompts": 0}, "model_path": "/m"}).encode(), "n_prompts"),
        (json.dumps({"experiment_id": "e", "model_path": "/m"}).encode(), "config"),
    ],
    ids=["missing", "not-json", "invalid-config", "missing-field"],
)
def test_a_bad_request_exits_2_with_error_json(tmp_path, content, needle):
    request = tmp_path / "request.json"
    if content is not None:
        request.write_bytes(content)
    out = tmp_path / "out"
    proc = _runner("--config", str(request), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == EXIT_BAD_REQUEST
    error = RunError.model_validate_json((out / "error.json").read_text(encoding="utf-8"))
    assert error.phase == "request"
    assert str(request) in error.message and needle in error.message
    events = _events(proc.stdout)
    assert events[-1].event == "error"
    assert sorted(os.listdir(out)) == ["error.json"]


def test_a_missing_model_path_fails_in_load(tmp_path):
    missing = tmp_path / "no-such-model"
    request = RunRequest(experiment_id="exp-load", config=make_config(model=str(missing), device="cpu"),
                         model_path=str(missing))
    (tmp_path / "request.json").write_text(request.model_dump_json(), encoding="utf-8")
    out = tmp_path / "out"
    proc = _runner("--config", str(tmp_path / "request.json"), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == EXIT_FAILED
    error = RunError.model_validate_json((out / "error.json").read_text(encoding="utf-8"))
    assert (error.phase, error.experiment_id) == ("load", "exp-load")
    assert str(missing) in error.message
    assert error.traceback
    events = _events(proc.stdout)
    assert [e.event for e in events] == ["started", "error"]
    assert events[0].data["contract"] == contract_fingerprint()
    assert sorted(os.listdir(out)) == ["error.json"]  # no result.json, no leftover temp files
