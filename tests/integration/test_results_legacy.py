"""Results written before schema 1.2 still list, show, compare and export: a real 1.1 result folder (the tiny Llama
on CPU through `lem run`, written by the code before the 1.2 renames, kept in tests/fixtures/results-1.1), read by
the real CLI in a subprocess. Each figure is checked against the raw 1.1 JSON, under its old name."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from conftest import run_lem
from llenergymeasure.results.discover import load_experiment

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "results-1.1"
(RUN,) = [p for p in FIXTURE.iterdir() if p.is_dir()]
RAW = json.loads((RUN / "result.json").read_text(encoding="utf-8"))


@pytest.fixture
def old_results(tmp_path) -> Path:
    """Two copies of the 1.1 run (compare needs two), in a results folder of their own."""
    root = tmp_path / "results"
    for name in ("a", "b"):
        shutil.copytree(RUN, root / f"{RUN.name}-{name}")
    return root


def test_the_fixture_is_a_real_1_1_result():
    assert RAW["schema_version"] == "1.1"
    assert {"total_inference_time_sec", "model_load_sec", "total_flops", "warmup_batches"} <= set(RAW)
    assert RAW["energy"]["sampler"] == "none" and RAW["whole_run"]["flops"] == RAW["flops"]["total"]


def test_a_1_1_result_reads_under_the_1_2_names():
    loaded = load_experiment(RUN)
    assert loaded.ok, loaded.failure
    r = loaded.result
    assert r.schema_version == "1.1"  # the file's own version is kept
    assert r.inference_time_s == RAW["total_inference_time_sec"]
    assert r.model_load_s == RAW["model_load_sec"]
    assert r.energy_per_token_j is RAW["avg_energy_per_token_j"] is None  # energy null on this CPU: still null
    assert r.adjusted_energy_j is RAW["energy"]["adjusted_energy_j"] is None
    assert r.headline.flops == RAW["total_flops"] and r.flops.total == RAW["whole_run"]["flops"]
    assert r.flops.method == RAW["flops_method"]
    assert (r.warmup.batches, r.warmup.stop_reason) == (RAW["warmup_batches"], RAW["warmup"]["stop_reason"])
    assert r.energy.source == RAW["energy"]["sampler"] and r.energy.unavailable_reason


def test_list_show_compare_export_read_a_1_1_folder(old_results, tmp_path):
    proc = run_lem("results", "list", str(old_results))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("done") == 2 and f"{RAW['output_tokens_per_second']:.1f}" in proc.stdout

    a, b = sorted(old_results.iterdir())
    proc = run_lem("results", "show", str(a))
    assert proc.returncode == 0, proc.stderr
    assert f"{RAW['total_flops']:.3e} in the total window" in proc.stdout
    assert f"{RAW['model_load_sec']:.2f} s (outside the window)" in proc.stdout
    assert "null — run is on CPU" in proc.stdout

    proc = run_lem("results", "compare", str(a), str(b))
    assert proc.returncode == 0, proc.stderr
    assert "throughput (tok/s)" in proc.stdout

    out = tmp_path / "runs.csv"
    proc = run_lem("results", "export", str(old_results), "-f", "csv", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 2
    for row in rows:
        assert float(row["inference_time_s"]) == pytest.approx(RAW["total_inference_time_sec"])
        assert float(row["model_load_s"]) == pytest.approx(RAW["model_load_sec"])
        assert float(row["headline_flops"]) == pytest.approx(RAW["total_flops"])
        assert float(row["run_flops"]) == pytest.approx(RAW["whole_run"]["flops"])
        assert int(row["warmup_batches"]) == RAW["warmup_batches"]
        assert row["energy_sampler"] == RAW["energy"]["sampler"] and row["energy_j"] == ""
