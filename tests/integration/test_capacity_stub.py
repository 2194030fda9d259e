"""The capacity search for real over sockets against a server whose capacity is known: the stub of serving_stub.py (a
protocol-seam fake) with 4 slots, each request holding one for exactly 0.1 s, and a TTFT SLO. The true capacity at
the SLO comes from serving_stub.slot_capacity, a direct simulation of that server independent of lem's search; energy
from a real CounterEnergySource over a 100 W scripted counter device, so J per good token at capacity is known."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from lem_runner.contract.config import ExperimentConfig
from lem_runner.contract.protocol import RunRequest
from lem_runner.energy.tracker import CounterEnergySource
from lem_runner.measurement.environment import collect_environment
from lem_runner.serving.run import run_serving
from lem_runner.session import HeldEngine
from serving_stub import StubServer, slot_capacity
from test_serving_energy_run import _Device, _Phase

SLOTS, TTFT_S, TOKEN_S, TOKENS, N, SHARE, BOUND_MS = 4, 0.02, 0.01, 9, 40, 0.9, 40
WATTS = 100.0


def test_the_capacity_search_finds_the_stubs_known_capacity_within_5_percent_in_8_probes(tmp_path):
    truth = slot_capacity(SLOTS, TTFT_S + (TOKENS - 1) * TOKEN_S, N, SHARE, BOUND_MS / 1000, TTFT_S)
    device = _Device(lambda t, phase: WATTS)
    with StubServer(ttft_s=TTFT_S, token_delay_s=TOKEN_S, slots=SLOTS) as stub:
        cfg = ExperimentConfig(
            name="e", model="stub-model", scenario="serving", device="cpu", max_output_tokens=TOKENS,
            force_output_length=True, energy={"sample_hz": 20, "timeseries": False, "baseline": {"mode": "off"}},
            serving={"endpoint": stub.base_url, "warmup_requests": 1, "arrival": "constant", "n_requests": N,
                     "slo": {"ttft_ms": BOUND_MS},
                     "capacity": {"good_share": SHARE, "rate_min": 20, "rate_max": 80, "tolerance": 0.03}})
        source = CounterEnergySource([device], "fake_counter", "counter of a scripted device", sample_hz=20)
        result = run_serving(RunRequest(experiment_id="e", config=cfg, model_path="/nonexistent"),
                             energy_for=lambda kind: source,
                             environment_for=lambda libs, kind, cuda: collect_environment(libs, [], False, None, None),
                             emit=lambda event: None, phase=_Phase(device), out_dir=tmp_path, held=HeldEngine())
        assert len(stub.arrivals) == 1 + N * len(result.serving.capacity.probes)  # one warmup, then every probe
    c = result.serving.capacity
    assert c.found == "bracketed" and len(c.probes) <= 8
    assert abs(c.capacity - truth) / truth <= 0.05, (c.capacity, truth, [(p.load, p.verdict) for p in c.probes])
    assert c.first_failing > c.capacity and [p.load for p in c.probes][:2] == [20, 80]
    top = max(c.probes, key=lambda p: p.load)
    assert not top.passed and top.good_share < SHARE  # 80 req/s is twice what 4 slots of 0.1 s can serve
    # the headline is the capacity probe's: its rate, its requests (requests.parquet), its figures
    head = c.probes[c.headline_probe]
    assert head.load == c.capacity and head.passed and result.serving.offered_rate_rps == c.capacity
    assert result.config.serving.rate is None and result.serving.n_requests == N
    rows = pq.read_table(tmp_path / "requests.parquet").to_pylist()
    probe_rows = pq.read_table(tmp_path / head.requests_file).to_pylist()
    assert len(rows) == N and [r["submit_s"] for r in rows] == [r["submit_s"] for r in probe_rows]
    assert all((tmp_path / p.requests_file).exists() for p in c.probes)
    # J per good token at capacity: a constant 100 W over the probe's window / the good requests' output tokens
    good_tokens = sum(r["output_tokens"] for r in rows
                      if r["status"] == "ok" and (r["first_token_s"] - r["submit_s"]) * 1000 <= BOUND_MS)
    window_s = max(r["end_s"] for r in rows) - min(r["submit_s"] for r in rows)
    assert c.energy_per_good_token_j == pytest.approx(WATTS * window_s / good_tokens, rel=0.03)
    assert c.energy_per_request_j == pytest.approx(WATTS * window_s / N, rel=0.03)
    assert c.goodput_rps == pytest.approx(head.goodput_rps) and c.energy_unavailable_reason is None
    assert "one idle baseline" in c.baseline and "bisect" in c.method
    # its plot, with energy measured: J/good token per probe drawn, the capacity marked where it was found
    from llenergymeasure.results.capacity_plot import capacity_figure, capacity_plot
    from llenergymeasure.results.discover import Experiment

    written = capacity_plot(Experiment(tmp_path, result), tmp_path / "capacity.png")
    assert written.path.read_bytes()[:4] == b"\x89PNG" and f"capacity {c.capacity:.3g} req/s" in written.title
    _, (left, right) = capacity_figure(Experiment(tmp_path, result))
    drawn = sorted(y for line in right.get_lines() if line.get_marker() == "s" for y in line.get_ydata())
    assert drawn == pytest.approx(sorted(p.energy_per_good_token_j for p in c.probes
                                         if p.energy_per_good_token_j is not None))
    assert any(list(line.get_xdata()) == [c.capacity, c.capacity] for line in left.get_lines())


def test_a_study_gives_the_capacity_per_point_of_its_sweep_in_show_and_export(tmp_path):
    # the sweep moves the answer length, so each point's service time and true capacity are known; `lem results
    # show` lists the capacity per point and the export has it as a column
    from conftest import run_lem, write_yaml

    tokens, n, share, bound_ms = (9, 5), N, SHARE, 30
    truths = {t: slot_capacity(SLOTS, TTFT_S + (t - 1) * TOKEN_S, n, share, bound_ms / 1000, TTFT_S) for t in tokens}
    with StubServer(ttft_s=TTFT_S, token_delay_s=TOKEN_S, slots=SLOTS) as stub:
        study = write_yaml(tmp_path / "s.yaml", f"""\
name: cap
n_cycles: 1
base:
  model: stub
  scenario: serving
  device: cpu
  max_output_tokens: 9
  force_output_length: true
  serving:
    endpoint: {stub.base_url}
    arrival: constant
    n_requests: {n}
    warmup_requests: 0
    slo: {{ttft_ms: {bound_ms}}}
    capacity: {{good_share: {share}, rate_min: 25, rate_max: 100, tolerance: 0.03}}
sweep: {{max_output_tokens: {list(tokens)}}}
""")
        proc = run_lem("run", str(study), "-o", str(tmp_path / "out"))
        assert proc.returncode == 0, proc.stderr
    exported = run_lem("results", "export", str(tmp_path / "out"), "-o", str(tmp_path / "r.csv"))
    assert exported.returncode == 0, exported.stderr
    import csv

    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert len(rows) == 2
    for row in rows:
        truth = truths[int(row["study_point"].rsplit("=", 1)[1])]
        assert abs(float(row["capacity_rate_per_s"]) - truth) / truth <= 0.05, (row["study_point"], truth)
        assert row["capacity_found"] == "bracketed" and int(row["capacity_probes"]) <= 8
    (study_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    shown = run_lem("results", "show", str(study_dir))
    assert shown.returncode == 0 and "capacity" in shown.stdout, shown.stdout
    # the points table's capacity column (its header wrapped over two lines at 80 columns) holds each point's
    assert all(f"{float(row['capacity_rate_per_s']):.3g}" in shown.stdout for row in rows)
