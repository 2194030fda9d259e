"""Serving for real in the vLLM CPU image: a study sweeping the Poisson rate (two points) against vLLM's own OpenAI
server, started by the runner inside the container (network none: loopback only), on the tiny model. The two rates
share one server (one engine session, one container): the second run gets it once it is idle and its prefix cache
has been emptied (POST /reset_prefix_cache, answered 200 by the real server)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult

pytestmark = pytest.mark.docker


def test_poisson_at_two_rates_against_the_vllm_server_in_its_image(tmp_path, tiny_model_path, vllm_cpu_image,
                                                                    no_leftover_containers):
    study = write_yaml(tmp_path / "rates.yaml", f"""\
name: rates
base:
  model: {tiny_model_path}
  backend: vllm
  scenario: serving
  dtype: float32
  max_input_tokens: 64
  max_output_tokens: 4
  force_output_length: true
  vllm: {{max_model_len: 256, enforce_eager: true, enable_prefix_caching: true}}
  serving:
    arrival: poisson
    n_requests: 6
    warmup_requests: 1
    input_tokens: {{dist: fixed, value: 8}}
    slo: {{ttft_ms: 30000}}
sweep:
  serving.rate: [2, 8]
""")
    proc = run_lem("run", str(study), "-o", str(tmp_path / "r"), "--isolated", timeout=900)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (study_dir,) = (tmp_path / "r").iterdir()
    summary = json.loads((study_dir / "study_summary.json").read_text())
    assert [e["status"] for e in summary["experiments"]] == ["done", "done"]
    rates, engines, logs = {}, [], []
    run_dirs = [p for p in study_dir.iterdir() if (p / "result.json").exists()]
    for run_dir in sorted(run_dirs, key=lambda p: json.loads((p / "result.json").read_text())["start_time"]):
        r = ExperimentResult.model_validate_json((run_dir / "result.json").read_text())
        s = r.serving
        rates[s.offered_rate_rps] = s
        engines.append(r.engine)
        logs.append((run_dir / "server.log").read_text())
        assert (s.n_requests, s.n_ok) == (6, 6) and r.output_tokens == 24 and r.whole_run.input_tokens == 48
        table = pq.read_table(run_dir / "requests.parquet").to_pylist()
        assert len(table) == 6 and all(sum(row["chunk_tokens"]) == 4 for row in table)  # counts from usage
        # vLLM may stream two tokens in one chunk: ITL is per chunk gap
        assert s.ttft.n == 6 and s.tpot.n == 6 and s.e2e.n == 6
        assert s.itl.n == sum(len(row["chunk_times_s"]) - 1 for row in table)
        assert s.n_good == 6 and s.goodput_rps > 0 and s.achieved_rate_rps > 0
        assert s.server.startswith("vllm")
        # what the server ran, read back from it: its engine-config log line and its /v1/models card
        resolved = r.engine_settings["resolved"]
        assert r.backend_details["dtype"] == resolved["dtype"] == "float32" and resolved["max_model_len"] == 256
        assert resolved["enable_prefix_caching"] is True and resolved["enforce_eager"] is True
        assert r.total_energy_j is None and s.energy_unavailable_reason
    assert set(rates) == {2.0, 8.0}
    fresh, kept = engines
    assert (fresh.fresh, kept.fresh, kept.runs_served) == (True, False, 1)
    assert fresh.server_pid == kept.server_pid and fresh.pid == kept.pid and fresh.session == kept.session
    assert fresh.reset == [] and kept.reset == ["POST /reset_prefix_cache"]
    assert fresh.load_s > 0 and kept.load_s == fresh.load_s
    starts = sorted(x.server_start_s or 0 for x in rates.values())
    assert starts[0] == 0 and starts[1] > 0  # one start-up, in the first run; the kept server's run started none
    # vLLM's start-up is in the first run's log only; the second run's share has the server's own word on the reset
    assert "Starting vLLM server on" in logs[0] and "Starting vLLM server on" not in logs[1]
    # each run empties the cache after its warmup (its warmup prompts are outside the plan too); the kept server's
    # run also before it, at the hand-over
    assert logs[0].count("Resetting prefix cache") == 1 and logs[1].count("Resetting prefix cache") == 2
