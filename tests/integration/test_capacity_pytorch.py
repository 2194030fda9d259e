"""A capacity search for real on the PyTorch path on CPU: lem starts the transformers server once for the tiny model,
probes a closed loop at the bracket's two ends on it (a generous SLO, so the high end passes and the capacity is at
least that: two probes, whatever the machine's speed), and reports capacity, probes and J per good token at capacity
— null on this machine, with the reason. `lem results show`, `export` and `plot` read it (the capacity figure drawn)."""

from __future__ import annotations

import csv
import json

from conftest import run_lem
from test_serving_pytorch import _config


def test_a_capacity_search_on_the_pytorch_server_reports_capacity_probes_and_its_plot(tmp_path, tiny_model_path):
    cfg = _config(tmp_path, tiny_model_path, """\
  arrival: concurrency
  n_requests: 4
  warmup_requests: 1
  input_tokens: {dist: fixed, value: 6}
  slo: {ttft_ms: 60000, e2e_ms: 120000}
  capacity: {good_share: 0.75, concurrency_min: 1, concurrency_max: 3}
""")
    assert run_lem("config", "validate", str(cfg)).returncode == 0
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    c = result["serving"]["capacity"]
    assert (c["knob"], c["found"], c["capacity"], c["first_failing"]) == ("concurrency", "at_least_max", 3, None)
    assert [(p["load"], p["passed"], p["n_requests"]) for p in c["probes"]] == [(1, True, 4), (3, True, 4)]
    assert all(p["steady_state_quality"] == "steady" and p["ttft_p50_ms"] > 0 for p in c["probes"])
    assert result["serving"]["clients"] == 3 and c["headline_probe"] == 1 and c["capacity_rps"] > 0
    # no energy source here: null with the reason, never 0
    assert c["energy_per_good_token_j"] is None and c["energy_per_request_j"] is None
    assert c["energy_unavailable_reason"] and all(p["energy_per_good_token_j"] is None for p in c["probes"])
    assert result["serving"]["server_start_s"] > 0 and result["engine"]["fresh"]  # one server for both probes
    assert "capacity search: the bracket's high end 3 passed" in " ".join(result["warnings"])

    shown = run_lem("results", "show", str(run_dir))
    assert shown.returncode == 0 and "capacity" in shown.stdout and "at least this" in shown.stdout
    exported = run_lem("results", "export", str(tmp_path / "out"), "-o", str(tmp_path / "r.csv"))
    assert exported.returncode == 0, exported.stderr
    (row,) = csv.DictReader((tmp_path / "r.csv").open())
    assert (row["capacity_clients"], row["capacity_found"], row["capacity_probes"]) == ("3", "at_least_max", "2")
    assert row["capacity_energy_per_good_token_j"] == "" and float(row["capacity_rate_per_s"]) > 0
    plotted = run_lem("results", "plot", str(tmp_path / "out"), "-o", str(tmp_path / "plots"))
    assert plotted.returncode == 0, plotted.stderr
    png = tmp_path / "plots" / f"capacity-{result['experiment_id']}.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
