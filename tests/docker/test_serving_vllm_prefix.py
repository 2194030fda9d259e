"""Shared prefixes against vLLM's own server in its CPU image: one study sweeping vllm.enable_prefix_caching (on, off)
over a workload of 2 shared prefixes of 256 token ids ahead of 16-id prompts. With caching on, vLLM's prefix-cache
counters (GET /metrics, read at the window's edges) show hits: every request after its group's first finds at least
the prefix's whole blocks cached (block_size 32: 8 blocks); with caching off vLLM looks nothing up (0 queried tokens,
hit rate null with the reason). TTFT is recorded for both (timings on a loaded CI machine are not verdicts); energy is
null with the reason on CPU."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult

pytestmark = pytest.mark.docker


def test_prefix_caching_on_and_off_on_a_shared_prefix_workload(tmp_path, tiny_model_path, vllm_cpu_image,
                                                                no_leftover_containers):
    study = write_yaml(tmp_path / "prefix.yaml", f"""\
name: prefix
base:
  model: {tiny_model_path}
  backend: vllm
  scenario: serving
  dtype: float32
  max_input_tokens: 64
  max_output_tokens: 4
  force_output_length: true
  vllm: {{max_model_len: 512, enforce_eager: true, block_size: 32}}
  serving:
    arrival: poisson
    rate: 2
    n_requests: 8
    warmup_requests: 1
    input_tokens: {{dist: fixed, value: 16}}
    shared_prefix: {{tokens: 256, groups: 2}}
sweep:
  vllm.enable_prefix_caching: [true, false]
""")
    proc = run_lem("run", str(study), "-o", str(tmp_path / "r"), "--isolated", timeout=900)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (study_dir,) = (tmp_path / "r").iterdir()
    by_caching = {}
    for run_dir in (p for p in study_dir.iterdir() if (p / "result.json").exists()):
        r = ExperimentResult.model_validate_json((run_dir / "result.json").read_text())
        table = pq.read_table(run_dir / "requests.parquet").to_pylist()
        assert [row["prefix_group"] for row in table] == [0, 1] * 4
        assert all(row["input_tokens"] == 272 for row in table)  # 256 + 16 ids, the server's own count
        assert r.engine_settings["resolved"]["enable_prefix_caching"] is r.config.vllm.enable_prefix_caching
        by_caching[r.config.vllm.enable_prefix_caching] = r
    on, off = by_caching[True].serving, by_caching[False].serving
    assert (on.n_ok, off.n_ok) == (8, 8)
    # on: queried = every request's prompt; at least 6 requests (each after its group's first) hit 8 blocks of 32
    assert on.prefix_cache_queried_tokens == 8 * 272 and on.prefix_cache_hit_tokens >= 6 * 256
    assert on.prefix_cache_hit_rate == on.prefix_cache_hit_tokens / on.prefix_cache_queried_tokens > 0.5
    assert "vllm:prefix_cache_hits_total" in on.prefix_cache_source and on.prefix_cache_unavailable_reason is None
    # off: vLLM looks nothing up; the rate is null, with why
    assert off.prefix_cache_hit_rate is None and off.prefix_cache_queried_tokens == 0
    assert "prefix cache is off" in off.prefix_cache_unavailable_reason
    for r in by_caching.values():  # TTFT for both; no energy on CPU: null with the reason, J/token too
        assert r.serving.ttft.n == 8 and r.total_energy_j is None and r.energy_per_token_j is None
        assert r.serving.energy_unavailable_reason and r.serving.ttfat is None
    print(f"TTFT p50 caching on {on.ttft.p50_ms:.1f} ms, off {off.ttft.p50_ms:.1f} ms; hit rate "
          f"{on.prefix_cache_hit_rate:.3f}")
    summary = json.loads((study_dir / "study_summary.json").read_text())
    assert [e["status"] for e in summary["experiments"]] == ["done", "done"]
