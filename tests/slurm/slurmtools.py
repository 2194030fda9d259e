"""Helpers for the Slurm tests: the cluster fixture, sacct rows, waiting, stand-in scripts. (Not a conftest.py:
a second conftest module would shadow tests/conftest.py for ``from conftest import ...``.)"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from llenergymeasure.errors import SetupError
from llenergymeasure.launchers.slurm import SlurmCommands


def sacct_rows(job_ids, fields: str = "JobID,JobName,State,Start,End", wait_s: float = 20.0) -> dict[str, list[str]]:
    """sacct's rows for these jobs (sacct is eventually consistent: wait until every one is listed)."""
    ids = ",".join(sorted(set(job_ids)))
    deadline = time.monotonic() + wait_s
    while True:
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ids, "-o", fields], capture_output=True, text=True,
                             timeout=20).stdout
        rows = {line.split("|")[0]: line.split("|") for line in out.splitlines() if line}
        if len(rows) >= len(set(job_ids)) or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def script(path: Path, body: str) -> Path:
    """An executable shell script (stands in for the node's python in fault tests)."""
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCommands:
    """Slurm's commands, once sinfo answers; in CI a missing cluster is a failure, not a skip."""
    commands = SlurmCommands(timeout_s=20)
    try:
        commands.reachable()
    except SetupError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Slurm tests for real (make slurm-up): {exc}")
        pytest.skip(str(exc))
    return commands
