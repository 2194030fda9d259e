"""Serving for real on the PyTorch path: lem's runner starts the transformers continuous-batching server on loopback,
drives it with the load generator, and stops it; the server killed mid-run for real. (The stub server of
test_serving_client.py is this test's protocol-seam twin.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from conftest import write_yaml
from lem_runner.serving.conversations import PLAIN

SERVER_MODULE = "lem_runner.backends.pytorch.transformers_server"


def _server_pids(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if SERVER_MODULE in cmd and marker in cmd:
                pids.append(int(entry.name))
    return pids


def _config(tmp_path: Path, model: Path, serving: str) -> Path:
    return write_yaml(tmp_path / "serve.yaml", f"""\
name: serve
model: {model}
scenario: serving
device: cpu
dtype: float32
max_output_tokens: 6
force_output_length: true
runner: local
pytorch: {{batch_size: 8}}
serving:
{serving}
""")


def test_a_poisson_serving_run_on_the_pytorch_path(tmp_path, tiny_model_path):
    import llenergymeasure as lem

    cfg = _config(tmp_path, tiny_model_path, """\
  arrival: poisson
  rate: 4
  n_requests: 10
  warmup_requests: 1
  input_tokens: {dist: uniform, min: 4, max: 12}
  slo: {ttft_ms: 60000, tpot_ms: 60000}
""")
    result = lem.run_experiment(str(cfg), output=tmp_path / "out")
    s = result.serving
    run_dir = next((tmp_path / "out").iterdir())
    assert (s.n_requests, s.n_ok, s.n_errors, s.n_timeouts) == (10, 10, 0, 0)
    assert result.output_tokens == 60 and 4 * 10 <= result.whole_run.input_tokens <= 12 * 10  # exact lengths: token ids
    assert s.ttft.n == 10 and s.tpot.n == 10 and s.itl.n == 50 and s.e2e.n == 10
    assert s.ttft.p50_ms <= s.e2e.p50_ms and result.ttft == s.ttft
    assert result.tpot == s.tpot and result.latency_definitions["tpot"]  # one TPOT, at the top as offline
    # the host's load over the load window, the server lem started counted as the run's own CPU
    load = result.host_load
    assert load is not None and load.cpus >= 1 and abs(load.window_s - s.duration_s) < 1.0 and load.own_cpu_s > 0
    assert s.offered_rate_rps == 4 and s.achieved_rate_rps > 0 and s.inflight_max >= 1
    assert s.n_good == 10 and s.goodput_rps > 0  # a generous SLO: every request meets it
    assert s.server_start_s > 0 and result.model_load_s == s.server_start_s
    # no energy source on this machine: null with the reason, never 0
    assert result.total_energy_j is None and s.energy_per_good_token_j is None and s.energy_per_request is None
    assert s.energy_unavailable_reason and result.energy.unavailable_reason
    table = pq.read_table(run_dir / "requests.parquet").to_pylist()
    assert len(table) == 10 and all(r["status"] == "ok" and sum(r["chunk_tokens"]) == 6 for r in table)
    assert all(r["submit_s"] <= r["first_token_s"] <= r["end_s"] for r in table)
    assert "continuous batching ready" in (run_dir / "server.log").read_text()
    assert _server_pids(str(tiny_model_path)) == []  # stopped


def test_the_server_killed_mid_run_fails_the_run_and_keeps_the_records(tmp_path, tiny_model_path):
    cfg = _config(tmp_path, tiny_model_path, """\
  arrival: concurrency
  concurrency: 2
  duration_s: 120
  warmup_requests: 0
""")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "llenergymeasure", "run", str(cfg), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # wait until the server is up
            logs = list(out.glob("*/server.log"))
            if logs and "ready" in logs[0].read_text(errors="replace") and _server_pids(str(tiny_model_path)):
                break
            time.sleep(0.5)
        time.sleep(6)  # the load runs: requests done and in flight
        (pid,) = _server_pids(str(tiny_model_path))
        os.kill(pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr
    run_dir = next(out.iterdir())
    error = json.loads((run_dir / "error.json").read_text())
    assert error["phase"] == "analyse" and "server exited with code -9 during the load" in error["message"]
    assert "Traceback" not in stderr
    records = pq.read_table(run_dir / "requests.parquet").to_pylist()
    assert len(records) >= 2 and any(r["status"] == "error" for r in records)  # the partial record is kept
    assert not (run_dir / "result.json").exists()
    assert _server_pids(str(tiny_model_path)) == []


def test_a_serving_run_records_the_dtype_and_settings_the_server_ran(tmp_path, tiny_model_path):
    # dtype auto: the server loads the checkpoint's own dtype; the result records that (read back from the server's
    # /v1/models card), not "auto", and engine_settings holds the command and the server's batching settings
    import llenergymeasure as lem

    stored = json.loads((Path(tiny_model_path) / "config.json").read_text())
    truth = stored.get("dtype") or stored.get("torch_dtype")
    cfg = _config(tmp_path, tiny_model_path, "  arrival: poisson\n  rate: 8\n  n_requests: 2\n  warmup_requests: 0\n")
    cfg.write_text(cfg.read_text().replace("dtype: float32", "dtype: auto"))
    result = lem.run_experiment(str(cfg), output=tmp_path / "out")
    settings = result.engine_settings
    assert result.backend_details["dtype"] == truth != "auto"
    assert settings["resolved"]["dtype"] == truth and settings["resolved"]["max_requests_per_batch"] == 8
    assert settings["sources"] == ["GET /v1/models"]
    args = settings["arguments"]
    assert args[args.index("--max-batch") + 1] == "8" and args[args.index("--dtype") + 1] == "auto"
    assert "--port" not in args


def test_multi_turn_conversations_on_the_pytorch_path(tmp_path, tiny_model_path):
    # 3 conversations x 3 turns from 2 closed-loop users, 50 ms think: each turn's prompt carries the history, so the
    # server's prompt-token count grows turn by turn; per-turn and per-conversation figures; parquet columns
    import llenergymeasure as lem

    cfg = _config(tmp_path, tiny_model_path, """\
  arrival: concurrency
  concurrency: 2
  warmup_requests: 1
  conversations:
    n_conversations: 3
    turns: 3
    user_tokens: {value: 4}
    think_time: {dist: fixed, value: 0.05}
""")
    result = lem.run_experiment(str(cfg), output=tmp_path / "out")
    s, c = result.serving, result.serving.conversations
    assert (s.n_requests, s.n_ok) == (9, 9) and c is not None
    assert (c.n_conversations, c.n_complete, c.turns_sent) == (3, 3, 9)
    assert c.prompt_format == PLAIN  # the tiny model's tokenizer has no chat template (the vLLM image test's has)
    assert [t.turn for t in c.by_turn] == [0, 1, 2] and all(t.n_ok == 3 and t.ttft_p50_ms for t in c.by_turn)
    assert c.by_turn[0].input_tokens_mean < c.by_turn[1].input_tokens_mean < c.by_turn[2].input_tokens_mean
    assert c.think_lag_p99_ms is not None and c.duration_mean_s > 0.1  # two think gaps of 50 ms at least
    assert c.energy_per_conversation_mean_j is None and c.by_turn[0].energy_j is None  # no energy on this host
    assert s.energy_unavailable_reason
    table = pq.read_table(next((tmp_path / "out").iterdir()) / "requests.parquet").to_pylist()
    assert sorted((r["conversation_id"], r["turn"]) for r in table) == [(i, k) for i in range(3) for k in range(3)]


def test_a_shared_prefix_workload_on_the_pytorch_path(tmp_path, tiny_model_path):
    # 4 requests of 6 token ids behind 2 shared prefixes of 20 ids: the server counts 26 prompt tokens each; the
    # group is in requests.parquet; lem's transformers server has no prefix cache to read, and no reasoning parser
    import llenergymeasure as lem
    from lem_runner.serving.figures import NOT_SEPARATED

    cfg = _config(tmp_path, tiny_model_path, """\
  arrival: poisson
  rate: 8
  n_requests: 4
  warmup_requests: 1
  input_tokens: {value: 6}
  shared_prefix: {tokens: 20, groups: 2}
""")
    result = lem.run_experiment(str(cfg), output=tmp_path / "out")
    s = result.serving
    assert (s.n_requests, s.n_ok) == (4, 4) and result.whole_run.input_tokens == 4 * 26
    table = pq.read_table(next((tmp_path / "out").iterdir()) / "requests.parquet").to_pylist()
    assert [(r["prefix_group"], r["input_tokens"]) for r in table] == [(0, 26), (1, 26), (0, 26), (1, 26)]
    assert s.prefix_cache_hit_rate is None and "exposes no prefix-cache counters" in s.prefix_cache_unavailable_reason
    assert s.ttfat is None and s.ttfat_unavailable_reason == NOT_SEPARATED
    assert all(r["first_answer_token_s"] == r["first_token_s"] for r in table)  # no reasoning: the answer is all
    assert s.energy_per_request is None and s.energy_unavailable_reason  # no energy on this host: null, with why
