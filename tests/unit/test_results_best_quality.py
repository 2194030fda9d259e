"""`lem results best --max-kl / --min-accuracy` and quality.png on a precision study with known figures: the pick is
the lowest J/token whose KL and accuracy keep within the bounds, worked out by hand from the table."""

from __future__ import annotations

import json

import pytest
from conftest import make_config, make_result, run_lem
from llenergymeasure.results.discover import find_experiments
from llenergymeasure.results.operating_points import NoneMeetsTargets, best, points
from llenergymeasure.results.plot import plot_results

# (label, J/token, KL from float32, task accuracy): lower precision costs less and drifts further
TABLE = [("dtype=float32", 0.50, 0.0, 0.80), ("dtype=bfloat16", 0.30, 0.002, 0.78), ("int8", 0.20, 0.05, 0.60)]


def _fidelity(kl):
    return {"reference": "dtype=float32", "n_requests": 4, "exact_match": 1.0, "agreement": 1.0,
            "first_divergence_mean": 8.0, "kl_mean_nats": kl, "kl_tokens": 32, "kl_source": "full distribution",
            "duration_s": 0.1}


def _task(acc):
    return {"name": "mc", "scorer": "builtin", "accuracy": acc, "n_items": 50, "duration_s": 0.1}


@pytest.fixture
def study(tmp_path):
    root = tmp_path / "results" / "precision-20250101-120000"
    entries = []
    for i, (label, jpt, kl, acc) in enumerate(TABLE):
        name = f"precision-00{i + 1}-c1"
        result = make_result(config=make_config(device="cuda"), experiment_id=name, energy_per_token_j=jpt,
                             total_energy_j=jpt * 32, energy={"source": "nvml_counter", "method": "NVML"},
                             quality={"fidelity": _fidelity(kl), "task": _task(acc)})
        (root / name).mkdir(parents=True)
        (root / name / "result.json").write_text(result.model_dump_json())
        entries.append({"label": label, "cycle": 1, "result_path": name})
    (root / "manifest.json").write_text(json.dumps({"study": "precision", "entries": entries}))
    return root


def test_the_cheapest_configuration_within_the_quality_bounds(study):
    pts = points(find_experiments(study))
    assert best(pts, {}).chosen.label.endswith("int8")
    assert best(pts, {}, {"fidelity_kl_mean_nats": 0.01}).chosen.label.endswith("dtype=bfloat16")
    assert best(pts, {}, {"task_accuracy": 0.79}).chosen.label.endswith("dtype=float32")
    with pytest.raises(NoneMeetsTargets, match="task acc 0.78 < 0.9"):
        best(pts, {}, {"task_accuracy": 0.9})


def test_best_cli_takes_the_bounds(study):
    proc = run_lem("results", "best", str(study), "--max-kl", "0.01", "--min-accuracy", "0.7")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("best for KL <= 0.01, task acc >= 0.7: precision: dtype=bfloat16") and "KL 0.002" in first
    assert "missed: precision: int8 (default clocks): KL 0.05 > 0.01; task acc 0.6 < 0.7" in proc.stdout
    bad = run_lem("results", "best", str(study), "--min-accuracy", "2")
    assert bad.returncode == 2 and "--min-accuracy" in bad.stderr and "Traceback" not in bad.stderr


def test_quality_plot_draws_energy_against_kl_and_accuracy(study, tmp_path):
    written = {p.path.name: p for p in plot_results(study, tmp_path / "plots")}
    q = written["quality.png"]
    assert q.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and q.path.stat().st_size > 10_000
    assert q.xlabel.startswith("KL from the reference") and q.ylabel == "energy per output token (J/token)"
    assert "vs quality" in q.title


def test_no_quality_plot_without_energy(tmp_path):
    root = tmp_path / "r"
    (root / "one").mkdir(parents=True)
    (root / "one" / "result.json").write_text(make_result(quality={"fidelity": _fidelity(0.1)}).model_dump_json())
    assert "quality.png" not in {p.path.name for p in plot_results(root, tmp_path / "plots")}
