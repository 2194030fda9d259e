"""The serving run's edges for real: a user's endpoint (the stub server of serving_stub.py, a protocol-seam fake, as
the user's server), a server that never becomes ready, and Ctrl-C while the server starts — no process left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from conftest import run_lem, write_yaml
from serving_stub import StubServer
from test_serving_pytorch import _server_pids


def _cfg(tmp_path, model, serving: str):
    return write_yaml(tmp_path / "s.yaml", f"name: s\nmodel: {model}\nscenario: serving\ndevice: cpu\n"
                                           f"max_output_tokens: 5\nrunner: local\nserving:\n{serving}")


def test_a_users_endpoint_is_driven_and_nothing_is_started(tmp_path, tiny_model_path):
    with StubServer(ttft_s=0.02, token_delay_s=0.005) as stub:
        cfg = _cfg(tmp_path, tiny_model_path, f"  endpoint: {stub.base_url}\n  arrival: gamma\n  rate: 20\n"
                                              "  burstiness: 0.5\n  n_requests: 30\n  slo: {ttft_ms: 5000}\n")
        proc = run_lem("run", str(cfg), "-o", str(tmp_path / "out"))
        assert proc.returncode == 0, proc.stderr
        assert len(stub.arrivals) == 30 + 2  # two warmup requests, then the load
    (run_dir,) = (tmp_path / "out").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    s = result["serving"]
    assert (s["n_requests"], s["n_ok"], s["n_good"]) == (30, 30, 30) and s["server"].startswith("endpoint")
    assert s["server_start_s"] is None and not (run_dir / "server.log").exists()
    assert s["ttft"]["min_ms"] >= 20 and result["output_tokens"] == 150
    assert len(pq.read_table(run_dir / "requests.parquet")) == 30
    assert "SLO goodput" in proc.stdout and "30/30 met" in proc.stdout  # the summary on screen
    shown = run_lem("results", "show", str(run_dir))
    assert shown.returncode == 0 and "J per good output token null" in shown.stdout and "steady state" in shown.stdout


def test_an_endpoint_run_needs_neither_a_local_model_nor_the_backend_installed(tmp_path):
    # vLLM is not installed here and the model is nowhere on this host: the user's server holds both, and its usage
    # gives every token count, so the run is local and reads no model
    model = "lem-tests-nobody/never-cached-model-7f3a9c"
    with StubServer(ttft_s=0.01) as stub:
        cfg = write_yaml(tmp_path / "s.yaml", f"name: s\nmodel: {model}\nbackend: vllm\nscenario: serving\n"
                         f"device: cpu\nmax_output_tokens: 3\nserving:\n  endpoint: {stub.base_url}\n"
                         "  rate: 10\n  n_requests: 5\n  warmup_requests: 0\n")
        proc = run_lem("run", str(cfg), "-o", str(tmp_path / "out"))
        assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    table = pq.read_table(run_dir / "requests.parquet").to_pylist()
    assert result["serving"]["n_ok"] == 5 and result["output_tokens"] == 15
    assert all(r["input_tokens"] >= 1 and r["output_tokens"] == 3 for r in table)  # the stub's usage


def test_a_hung_request_and_a_malformed_stream_are_counted_and_the_run_completes(tmp_path):
    # the stub hangs on the prompt "hang" and breaks its stream on "malformed": a whole lem run counts both, keeps
    # them in requests.parquet, and the others' figures stand
    lines = [{"prompt": p} for p in ("fine", "hang", "fine", "malformed", "fine", "fine")]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with StubServer() as stub:
        cfg = write_yaml(tmp_path / "s.yaml", "name: s\nmodel: nobody/none\nscenario: serving\ndevice: cpu\n"
                         f"max_output_tokens: 3\nserving:\n  endpoint: {stub.base_url}\n  rate: 20\n"
                         "  n_requests: 6\n  warmup_requests: 0\n  request_timeout_s: 1\n"
                         "  dataset: {path: p.jsonl, format: prompts}\n")
        proc = run_lem("run", str(cfg), "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    s = json.loads((run_dir / "result.json").read_text())["serving"]
    assert (s["n_requests"], s["n_ok"], s["n_timeouts"], s["n_errors"]) == (6, 4, 1, 1)
    rows = {r["request"]: r for r in pq.read_table(run_dir / "requests.parquet").to_pylist()}
    assert rows[1]["status"] == "timeout" and 1.0 <= rows[1]["end_s"] - rows[1]["submit_s"] < 3.0
    assert rows[3]["status"] == "error" and "not JSON" in rows[3]["error"]
    assert s["ttft"]["n"] == 4 and "1 request(s) failed and 1 timed out" in " ".join(
        json.loads((run_dir / "result.json").read_text())["warnings"])


def test_a_server_that_is_not_ready_in_time_fails_the_load_phase(tmp_path, tiny_model_path):
    cfg = _cfg(tmp_path, tiny_model_path, "  rate: 1\n  server_start_timeout_s: 0.5\n")
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "out"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    error = json.loads((run_dir / "error.json").read_text())
    assert error["phase"] == "load" and "server not ready after 0.5 s" in error["message"]
    assert (run_dir / "server.log").exists() and _server_pids(str(tiny_model_path)) == []


def test_ctrl_c_while_the_server_starts_stops_it(tmp_path, tiny_model_path):
    cfg = _cfg(tmp_path, tiny_model_path, "  rate: 1\n")
    proc = subprocess.Popen([sys.executable, "-m", "llenergymeasure", "run", str(cfg), "-o", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not _server_pids(str(tiny_model_path)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _server_pids(str(tiny_model_path)), "the server never started"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    time.sleep(0.5)
    assert _server_pids(str(tiny_model_path)) == []


def test_a_kept_server_is_busy_while_a_request_runs_idle_after_and_reset_on_its_route():
    """ManagedServer's hand-over checks against the stub (a seam fake of vLLM's /metrics gauges and reset route;
    the real vLLM server answers them in tests/docker/test_serving_vllm.py, lem's own server in
    test_serving_sessions.py): the gauges summed, an unreadable server never called idle, a refused reset an error."""
    import threading
    import urllib.request

    import pytest
    from lem_runner.serving.lifecycle import ManagedServer, ServerError
    from lem_runner.serving.servers import ServerCommand

    with StubServer(ttft_s=1.5) as stub:
        cmd = ServerCommand("stub", ["stub"], busy_metrics=("vllm:num_requests_running", "vllm:num_requests_waiting"),
                            reset_routes=("/reset_prefix_cache",))
        server = ManagedServer(cmd, stub.port, Path("/nonexistent/server.log"))
        assert server.busy() == 0 and server.wait_idle(1)
        body = json.dumps({"model": "stub", "prompt": "a b", "max_tokens": 2, "stream": True}).encode()
        req = urllib.request.Request(f"{stub.base_url}/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        t = threading.Thread(target=lambda: urllib.request.urlopen(req, timeout=30).read())
        t.start()
        time.sleep(0.5)
        assert server.busy() == 1 and not server.wait_idle(0.2)  # the request is still being answered
        assert server.wait_idle(10)  # ...until it ends
        t.join(10)
        assert server.reset() == ["POST /reset_prefix_cache"] and stub.resets == 1
        stub.reset_success = False  # vLLM answers 200 with success false while blocks are held
        with pytest.raises(ServerError, match="success false"):
            server.reset()
        stub.reset_status = 500
        with pytest.raises(ServerError, match="HTTP 500"):
            server.reset()
        # a server without gauges cannot say it is idle: it is not handed to another run
        mute = ManagedServer(ServerCommand("stub", ["stub"]), stub.port, Path("/nonexistent/server.log"))
        assert mute.busy() is None and not mute.wait_idle(1)


def test_warmup_sends_prompts_outside_the_plan_and_cycled_prompts_are_warned(tmp_path, tiny_model_path):
    # 6 requests over 3 prompts: each prompt is sent twice (a prefix-cache hit on vLLM) and the result says so; the
    # 2 warmup requests must not be any measured prompt (else the first measured requests hit the cache they filled)
    with StubServer() as stub:
        cfg = write_yaml(tmp_path / "s.yaml", f"name: s\nmodel: {tiny_model_path}\nscenario: serving\ndevice: cpu\n"
                         f"max_output_tokens: 2\nrunner: local\nn_prompts: 3\nserving:\n  endpoint: {stub.base_url}\n"
                         "  rate: 50\n  n_requests: 6\n  warmup_requests: 2\n")
        proc = run_lem("run", str(cfg), "-o", str(tmp_path / "out"))
        assert proc.returncode == 0, proc.stderr
        prompts = [p for kind, p in stub.events if kind == "completion"]
    warm, measured = prompts[:2], prompts[2:]
    assert len(measured) == 6 and len(set(measured)) == 3
    assert not set(warm) & set(measured)
    (run_dir,) = (tmp_path / "out").iterdir()
    warnings = json.loads((run_dir / "result.json").read_text())["warnings"]
    assert any("6 requests share 3 distinct prompt(s)" in w for w in warnings), warnings


def test_warmup_then_reset_then_load_on_a_server_with_a_prefix_cache():
    """The order a server sees (the stub's event log, over real sockets): warmup requests on prompts outside the plan,
    then its reset route (vLLM's /reset_prefix_cache), then the measured requests; token-id prompts too."""
    from lem_runner.serving.client import LoadSpec, run_load
    from lem_runner.serving.lifecycle import ManagedServer, warm_up
    from lem_runner.serving.schedule import PlannedRequest
    from lem_runner.serving.servers import ServerCommand

    plan = [PlannedRequest(0, 0.0, [12, 40, 41, 42], 2), PlannedRequest(1, 0.01, [13, 50, 51], 2),
            PlannedRequest(2, 0.02, "a text prompt", 2)]
    with StubServer() as stub:
        cmd = ServerCommand("stub", ["stub"], busy_metrics=("vllm:num_requests_running", "vllm:num_requests_waiting"),
                            reset_routes=("/reset_prefix_cache",))
        server = ManagedServer(cmd, stub.port, Path("/nonexistent/server.log"))
        spec = LoadSpec(stub.base_url, "stub", None, None, 30, False, {"temperature": 0.0})
        assert warm_up(spec, plan, 3, server) == []
        records, _ = run_load(spec, plan)
        assert all(r.ok for r in records)
        events = list(stub.events)
    kinds = [k for k, _ in events]
    assert kinds == ["completion"] * 3 + ["reset"] + ["completion"] * 3
    warm = [p for _, p in events[:3]]
    measured = [p for _, p in events[4:]]
    assert sorted(map(str, measured)) == sorted(str(p.prompt) for p in plan)
    for w, p in zip(warm, plan, strict=True):  # same length, no shared first token/prefix with any measured prompt
        assert all(w[: len(m) // 2 + 1] != m[: len(m) // 2 + 1] for m in measured if type(m) is type(w))
        if isinstance(w, list):
            assert len(w) == len(p.prompt) and w[1:] == p.prompt[1:] and w[0] != p.prompt[0]
