"""Serving for real in the vLLM CPU image: a study sweeping the Poisson rate (two points) against vLLM's own OpenAI
server, started by the runner inside the container (network none: loopback only), on the tiny model."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult

pytestmark = pytest.mark.docker


@pytest.fixture(scope="session")
def vllm_cpu_image(engine):
    from llenergymeasure.images.build import build_image

    return build_image(engine, "vllm", cpu=True)


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
  vllm: {{max_model_len: 256, enforce_eager: true}}
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
    rates = {}
    for run_dir in sorted(p for p in study_dir.iterdir() if (p / "result.json").exists()):
        r = ExperimentResult.model_validate_json((run_dir / "result.json").read_text())
        s = r.serving
        rates[s.offered_rate_rps] = s
        assert (s.n_requests, s.n_ok) == (6, 6) and r.output_tokens == 24 and r.whole_run.input_tokens == 48
        table = pq.read_table(run_dir / "requests.parquet").to_pylist()
        assert len(table) == 6 and all(sum(row["chunk_tokens"]) == 4 for row in table)  # counts from usage
        # vLLM may stream two tokens in one chunk: ITL is per chunk gap
        assert s.ttft.n == 6 and s.tpot.n == 6 and s.e2e.n == 6
        assert s.itl.n == sum(len(row["chunk_times_s"]) - 1 for row in table)
        assert s.n_good == 6 and s.goodput_rps > 0 and s.achieved_rate_rps > 0
        assert s.server.startswith("vllm") and s.server_start_s > 0
        assert r.total_energy_j is None and s.energy_unavailable_reason
        assert "vllm" in (run_dir / "server.log").read_text().lower()
    assert set(rates) == {2.0, 8.0}
