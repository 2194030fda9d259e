"""The Docker engine goes away mid-study. lem reaches the real engine through a private socket proxy (so the shared
engine other tests use keeps running), and the test SIGKILLs the proxy while run 1's container is measuring: from
lem's side the engine has vanished (the log stream breaks, new connections are refused). Run 1 and run 2 fail with
reason 'setup' and a one-line cause, the circuit breaker stops the study, no traceback; the
study then resumes (here locally, with --retry-failed) and completes, and the orphan container's late result.json is
never read as a result.

When the engine only *looks* gone (as here), lem cannot remove the container it started: it stays labelled
lem.managed with its experiment id, and the test removes it. A daemon that really stops takes its containers down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import run_lem, write_yaml
from llenergymeasure.images.catalog import LABEL_MANAGED

pytestmark = pytest.mark.docker

PROXY = textwrap.dedent("""\
    import socket, sys, threading
    listen, target = sys.argv[1], sys.argv[2]
    server = socket.socket(socket.AF_UNIX)
    server.bind(listen)
    server.listen(64)
    def pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
    print("ready", flush=True)
    while True:
        client, _ = server.accept()
        upstream = socket.socket(socket.AF_UNIX)
        upstream.connect(target)
        threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
""")


def _engine_socket(engine) -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        pytest.skip(f"the engine is not on a unix socket ({host})")
    return host.removeprefix("unix://")


def test_engine_lost_mid_study_fails_runs_with_the_cause_and_the_study_resumes(tmp_path, tiny_model_path, engine,
                                                                               cpu_image):
    sock = tmp_path / "proxy.sock"
    proxy = subprocess.Popen([sys.executable, "-c", PROXY, str(sock), _engine_socket(engine)],
                             stdout=subprocess.PIPE, text=True)
    assert proxy.stdout.readline().strip() == "ready"
    study = write_yaml(tmp_path / "s.yaml", f"""\
name: enginelost
order: sequential
max_consecutive_failures: 2
base:
  model: {tiny_model_path}
  n_prompts: 2
  max_output_tokens: 4
  force_output_length: true
  warmup: {{n_batches: 0}}
sweep:
  seed: [1, 2]
""")
    out = tmp_path / "r"
    lem = subprocess.Popen([sys.executable, "-m", "llenergymeasure", "run", str(study), "-o", str(out), "--isolated"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
                           env={**os.environ, "DOCKER_HOST": f"unix://{sock}", "COLUMNS": "200"})
    try:
        seen = None
        deadline = time.monotonic() + 180
        while seen is None and time.monotonic() < deadline and lem.poll() is None:
            running = engine.containers.list(filters={"label": LABEL_MANAGED})
            seen = next((c for c in running if c.labels.get("lem.experiment", "").startswith("enginelost-")), None)
            time.sleep(0.1)
        assert seen is not None, "run 1's container never started"
        proxy.send_signal(signal.SIGKILL)  # the engine is gone, as far as lem can tell
        proxy.wait(timeout=10)
        output, _ = lem.communicate(timeout=240)
    finally:
        if proxy.poll() is None:
            proxy.kill()
        for c in engine.containers.list(all=True, filters={"label": LABEL_MANAGED}):
            if c.labels.get("lem.experiment", "").startswith("enginelost-"):
                c.remove(force=True)  # lem could not: its engine connection was gone
    assert lem.returncode == 1, output
    assert "Traceback" not in output
    (study_dir,) = out.iterdir()
    m = json.loads((study_dir / "manifest.json").read_text())
    assert m["status"] == "stopped" and [(e["status"], e["reason"]) for e in m["entries"]] == [("failed", "setup")] * 2
    assert "Docker engine failed during the run" in m["entries"][0]["error"]
    assert "no Docker engine answers" in m["entries"][1]["error"]

    resumed = run_lem("run", str(study), "-o", str(out), "--resume", str(study_dir), "--retry-failed", timeout=400)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    m = json.loads((study_dir / "manifest.json").read_text())
    assert m["status"] == "complete" and [e["status"] for e in m["entries"]] == ["done", "done"]
    assert [e["runner"] for e in m["entries"]] == ["local", "local"]
