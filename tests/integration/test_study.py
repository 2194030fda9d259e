"""`lem run STUDY.yaml` with cycles, end to end: the real CLI, real runner subprocesses, the tiny model, real files."""

from __future__ import annotations

import csv
import json

from conftest import run_lem, write_yaml
from llenergymeasure.study.aggregate import csv_columns


def test_2x2_sweep_with_two_cycles_writes_8_runs_aggregates_and_csv(tmp_path, tiny_model_path):
    study = write_yaml(tmp_path / "study.yaml", f"""\
name: cyc
n_cycles: 2
order: interleave
base:
  model: {tiny_model_path}
  n_prompts: 2
  max_output_tokens: 3
  force_output_length: true
  warmup:
    n_batches: 0
sweep:
  pytorch.batch_size: [2, 4]
  max_input_tokens: [32, 64]
""")
    out = tmp_path / "r"
    proc = run_lem("run", str(study), "-o", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (study_dir,) = out.iterdir()

    runs = sorted(p for p in study_dir.iterdir() if p.is_dir())
    assert len(runs) == 8
    assert all((p / "result.json").is_file() for p in runs)
    names = [p.name for p in runs]
    for point in (1, 2, 3, 4):
        for cycle in (1, 2):
            assert sum(n.startswith(f"cyc-00{point}-pytorch-c{cycle}-") for n in names) == 1, names

    summary = json.loads((study_dir / "study_summary.json").read_text())
    assert summary["n_cycles"] == 2 and summary["planned"] == 8 and summary["finished"] == 8
    assert summary["failed"] == 0 and summary["status"] == "complete"
    labels = [f"pytorch.batch_size={b}, max_input_tokens={m}" for b in (2, 4) for m in (32, 64)]
    # interleave: cycle 1 of every point, then cycle 2
    assert [(r["label"], r["cycle"]) for r in summary["experiments"]] == [(lb, c) for c in (1, 2) for lb in labels]
    manifest = json.loads((study_dir / "manifest.json").read_text())
    assert [e["status"] for e in manifest["entries"]] == ["done"] * 8
    assert summary["controller_overhead_s_per_experiment"] == manifest["controller_overhead_s_per_experiment"]
    aggs = summary["aggregates"]
    assert [a["label"] for a in aggs] == labels
    for a in aggs:
        assert a["backend"] == "pytorch" and a["n_ok"] == 2 and a["n_failed"] == 0
        tps = a["output_tokens_per_second"]
        assert tps["n"] == 2 and tps["mean"] > 0 and tps["ci95"] is not None and tps["ci95"] >= 0
        assert tps["std"] is not None and tps["cv"] is not None
        runs_tps = [r["output_tokens_per_second"] for r in summary["experiments"] if r["label"] == a["label"]]
        assert abs(tps["mean"] - sum(runs_tps) / 2) < 1e-9
        assert a["ttft_p50_ms"]["n"] == 2 and a["itl_p50_ms"]["n"] == 2
        # no GPU here: energy is null, never 0, with its reason
        assert a["energy_j"] == {"mean": None, "std": None, "ci95": None, "cv": None, "n": 0}
        assert a["energy_per_token_j"]["mean"] is None
        assert a["energy_unavailable_reason"]
    assert isinstance(summary["warnings"], list)

    with (study_dir / "study_summary.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        assert reader.fieldnames == csv_columns(["sweep.pytorch.batch_size", "sweep.max_input_tokens"])
    assert [(r["sweep.pytorch.batch_size"], r["sweep.max_input_tokens"]) for r in rows] == \
        [(b, m) for b in ("2", "4") for m in ("32", "64")]
    for col in ("label", "backend", "n_ok", "n_failed", "output_tokens_per_second_mean", "output_tokens_per_second_ci95",
                "ttft_p50_ms_mean", "itl_p50_ms_mean", "energy_j_mean", "energy_per_token_j_mean",
                "inference_time_s_mean", "energy_unavailable_reason"):
        assert col in reader.fieldnames
    assert len(rows) == 4
    for row in rows:
        assert row["n_ok"] == "2" and float(row["output_tokens_per_second_mean"]) > 0 and row["output_tokens_per_second_ci95"]
        assert row["energy_j_mean"] == "" and row["energy_per_token_j_mean"] == ""
    assert "±" in proc.stdout and "2/2" in proc.stdout and "study_summary.csv" in proc.stdout
    assert "[8/8]" in proc.stdout and "controller overhead" in proc.stdout
