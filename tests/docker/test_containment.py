"""Containment of the container `lem run --isolated` really starts, inspected live on the real engine while it runs,
and what it leaves behind: the HF token, result file ownership and modes, no leftover container or secret file.

One container start covers it all: a run that allows a model download (so the token is handed over and the network
is on) with a secret HF_TOKEN in lem's environment and umask 027. A run without download permission gets no network:
tests/docker/test_images.py::test_created_container_is_contained checks that on the engine.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import run_lem, write_yaml
from llenergymeasure.images.catalog import LABEL_MANAGED

pytestmark = pytest.mark.docker

SECRET = "hf_lemContainmentTestSecret0123456789"


def _secret_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("lem-secret-*")}


def test_the_launched_container_is_contained_and_leaves_no_secret(tmp_path, tiny_model_path, engine, cpu_image,
                                                                   no_leftover_containers):
    cfg = write_yaml(tmp_path / "c.yaml", f"""\
name: contained
model: {tiny_model_path}
allow_model_download: true
n_prompts: 1
max_output_tokens: 2
force_output_length: true
warmup: {{n_batches: 0}}
""")
    out = tmp_path / "r"
    secrets_before = _secret_dirs()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llenergymeasure", "run", str(cfg), "-o", str(out), "--isolated"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        env={**os.environ, "HF_TOKEN": SECRET, "COLUMNS": "200"}, preexec_fn=lambda: os.umask(0o027),
    )
    attrs = None
    deadline = time.monotonic() + 120
    while attrs is None and time.monotonic() < deadline and proc.poll() is None:
        for c in engine.containers.list(filters={"label": [LABEL_MANAGED, "lem.experiment"]}):
            if c.labels.get("lem.experiment", "").startswith("contained-"):
                attrs = c.attrs  # docker inspect of the live container
                token = next(m["Source"] for m in attrs["Mounts"] if m["Destination"] == "/run/secrets/hf_token")
                token_mode = stat.S_IMODE(os.stat(token).st_mode)  # while it exists
        time.sleep(0.1)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stdout + stderr
    assert attrs is not None, "never saw the container running"

    host, config = attrs["HostConfig"], attrs["Config"]
    assert host["Privileged"] is False
    assert not host.get("CapAdd") and host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True and set(host["Tmpfs"]) == {"/tmp"}
    assert config["User"] == f"{os.getuid()}:{os.getgid()}"
    assert host["NetworkMode"] == "bridge"  # asked for: allow_model_download
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert [d for d, m in mounts.items() if m["RW"]] == ["/lem/exchange"]
    assert mounts["/lem/model"]["RW"] is False and mounts["/run/secrets/hf_token"]["RW"] is False
    token_host = Path(mounts["/run/secrets/hf_token"]["Source"])
    assert token_mode == 0o600
    assert "HF_TOKEN_PATH=/run/secrets/hf_token" in config["Env"]
    inspected = repr(attrs)
    assert SECRET not in inspected  # not in argv (Args/Cmd), env, labels or anything else docker records

    # afterwards: no secret on disk or in any output, the token file and its folder deleted
    assert SECRET not in stdout + stderr
    assert not token_host.exists() and _secret_dirs() <= secrets_before
    (folder,) = out.iterdir()
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"result.json", "request.json", "config.json", "runner.log"}
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), path
        assert stat.S_IMODE(st.st_mode) == 0o640, f"{path}: {oct(st.st_mode)} (umask 027 gives 0640)"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750


def test_an_engine_session_container_gets_the_token_as_a_file_and_leaves_no_secret(tmp_path, tiny_model_path, engine,
                                                                                   cpu_image, no_leftover_containers):
    """A study's engine session (two runs, one container) that allows a download gets the token as a single run
    does: a read-only 0600 file, never argv or environment; removed when the session ends. (Before: no token at all,
    so a gated model could not be fetched in a session.)"""
    from llenergymeasure.launchers.docker import LABEL_STUDY

    study = write_yaml(tmp_path / "s.yaml", f"""name: sesstoken
base:
  model: {tiny_model_path}
  allow_model_download: true
  n_prompts: 1
  force_output_length: true
  warmup: {{n_batches: 0}}
  energy: {{baseline: {{mode: "off"}}}}
sweep:
  max_output_tokens: [2, 3]
""")
    out = tmp_path / "r"
    secrets_before = _secret_dirs()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llenergymeasure", "run", str(study), "-o", str(out), "--isolated"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        env={**os.environ, "HF_TOKEN": SECRET, "COLUMNS": "200"})
    attrs = None
    deadline = time.monotonic() + 120
    while attrs is None and time.monotonic() < deadline and proc.poll() is None:
        for c in engine.containers.list(filters={"label": [LABEL_MANAGED, LABEL_STUDY]}):
            if "--session" in (c.attrs["Args"] or []) and "sesstoken" in c.labels.get(LABEL_STUDY, ""):
                attrs = c.attrs
                token = next(m["Source"] for m in attrs["Mounts"] if m["Destination"] == "/run/secrets/hf_token")
                token_mode = stat.S_IMODE(os.stat(token).st_mode)
        time.sleep(0.1)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stdout + stderr
    assert attrs is not None, "never saw the session container running"
    assert token_mode == 0o600 and "HF_TOKEN_PATH=/run/secrets/hf_token" in attrs["Config"]["Env"]
    assert SECRET not in repr(attrs) and SECRET not in stdout + stderr
    assert not Path(token).exists() and _secret_dirs() <= secrets_before
    (study_dir,) = out.iterdir()
    results = [p / "result.json" for p in study_dir.iterdir() if (p / "result.json").is_file()]
    assert len(results) == 2 and all(SECRET.encode() not in p.read_bytes() for p in results)


def test_a_study_whose_image_is_missing_stops_before_it_starts(tmp_path, tiny_model_path, engine):
    study = write_yaml(tmp_path / "s.yaml", f"""\
name: noimage
base:
  model: {tiny_model_path}
  runner: docker:lem-test/absent-study:0
  n_prompts: 1
sweep:
  seed: [1, 2]
""")
    out = tmp_path / "r"
    proc = run_lem("run", str(study), "-o", str(out))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text and len([ln for ln in text.splitlines() if ln.strip()]) == 1
    assert "lem-test/absent-study:0 not found" in text and "lem images build pytorch" in text
    assert not out.exists()
