"""`lem results …` and `lem config …` end to end: a real study and a single run of the tiny model through `lem run`,
then the real CLI (in a subprocess) over the folders they left. No GPU here, so energy is null throughout: the
commands must say so, never show 0 and never crash."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import re
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import yaml
from conftest import run_lem, write_yaml
from lem_runner.contract import RunError
from llenergymeasure import load_results
from llenergymeasure.cli.app import main
from llenergymeasure.docs.schema import schemas
from llenergymeasure.render.compare import METRIC_LABELS, format_relative, format_value
from llenergymeasure.results.columns import COLUMN_NAMES
from llenergymeasure.results.compare import Value
from llenergymeasure.results.metrics import QUALITY_STUDY_METRICS, SERVING_STUDY_METRICS, STUDY_METRICS

REPO = Path(__file__).resolve().parents[2]
#: The export's columns for this results folder: the contract's, with the study's swept parameter beside its label.
EXPORT_COLUMNS = [*COLUMN_NAMES[:COLUMN_NAMES.index("study_point") + 1], "sweep.pytorch.batch_size",
                  *COLUMN_NAMES[COLUMN_NAMES.index("study_point") + 1:]]


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_model_path) -> Path:
    """results/: a 2-point x 2-cycle study, one single run, and one failed run (error.json + config.json)."""
    root = tmp_path_factory.mktemp("results-cli")
    out = root / "results"
    study = write_yaml(root / "study.yaml", f"""\
name: rs
n_cycles: 2
base:
  model: {tiny_model_path}
  n_prompts: 2
  max_output_tokens: 4
  force_output_length: true
  energy:
    baseline:
      mode: "off"
sweep:
  pytorch.batch_size: [1, 2]
""")
    proc = run_lem("run", str(study), "-o", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_lem("run", "-m", str(tiny_model_path), "-n", "2", "--max-output-tokens", "4", "--name", "single",
                   "-o", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    failed = out / "broken-20250101-000000"
    failed.mkdir()
    (failed / "config.json").write_text(json.dumps({"model": "/nowhere/model", "name": "broken"}))
    (failed / "error.json").write_text(RunError(experiment_id="broken", error_type="OSError",
                                                message="model folder not found", phase="load").model_dump_json())
    return out


def _results_json(root: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in root.rglob("result.json")}


def _study_dir(root: Path) -> Path:
    (study,) = [p for p in root.iterdir() if p.name.startswith("rs-")]
    return study


def test_list_one_line_per_experiment_with_null_energy_and_the_failed_run(results):
    proc = run_lem("results", "list", str(results))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    # one line per run, and a reason too long for its column continues on indented lines below it (never cut)
    runs = [i for i, line in enumerate(lines) if re.match(r"\d{4}-\d\d-\d\d ", line)]
    assert len(runs) == 6 and len(lines) == 1 + len(runs) + sum(1 for ln in lines[1:] if ln.startswith(" "))
    assert "tok/s" in lines[0] and "J/token" in lines[0]
    by_name = {name: next(line for line in lines if name in line) for name in _results_json(results)}
    for name, data in _results_json(results).items():
        line = by_name[name]
        assert f"{data['output_tokens_per_second']:.1f}" in line
        assert "null" in line and " cpu " in line and f"bs={data['backend_details']['batch_size']} " in line
    (at,) = [i for i, line in enumerate(lines) if "broken" in line]
    following = list(itertools.takewhile(lambda ln: ln.startswith(" "), lines[at + 1:]))  # its continuation
    failed = " ".join(" ".join([lines[at], *following]).split())
    assert "failed: load: OSError: model folder not found" in failed
    assert max(map(len, lines)) <= 160
    when = [lines[i][:19] for i in runs]
    assert when == sorted(when, reverse=True)  # newest first by default


def test_list_sorts_and_filters(results):
    proc = run_lem("results", "list", str(results), "--sort", "name", "--backend", "pytorch", "--model", "tiny",
                   "--since", "2025-01-01")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 + 5 and not any("broken" in line for line in lines)  # the failed run's model: /nowhere
    names = [line.split()[2] for line in lines[1:]]
    assert names == sorted(names, key=lambda n: (n.split("/")[0] if "/" in n else "", n.split("/")[-1]))
    assert run_lem("results", "list", str(results), "--backend", "vllm").stdout.strip().count("\n") == 0
    proc = run_lem("results", "list", str(results), "--since", "soon")
    assert proc.returncode == 2 and "--since" in proc.stderr and "Traceback" not in proc.stderr


def test_export_csv_has_one_row_per_experiment_with_the_documented_columns(results, tmp_path):
    out = tmp_path / "runs.csv"
    proc = run_lem("results", "export", str(results), "--format", "csv", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 6
    assert list(rows[0].keys()) == EXPORT_COLUMNS
    documented = (REPO / "docs" / "results-columns.md").read_text()
    for name in COLUMN_NAMES:
        assert f"| `{name}` |" in documented
    for name in ("output_tokens_per_second", "energy_j", "energy_per_token_j", "energy_per_token_adjusted_j",
                 "ttft_p50_ms", "baseline_power_w", "prefill_energy_j", "inference_time_s"):
        assert name in COLUMN_NAMES
    data = _results_json(results)
    for row in rows:
        if row["status"] == "failed":
            assert row["experiment_id"] == "broken-20250101-000000" and row["model"] == "/nowhere/model"
            assert row["output_tokens_per_second"] == "" and "model folder not found" in row["error"]
            continue
        d = data[row["experiment_id"]]
        assert row["sweep.pytorch.batch_size"] == (str(d["config"]["pytorch"]["batch_size"]) if row["study"] else "")
        assert float(row["output_tokens_per_second"]) == pytest.approx(d["output_tokens_per_second"])
        assert row["energy_j"] == "" and row["energy_per_token_j"] == ""  # null, never 0
        assert row["energy_unavailable_reason"] == d["energy"]["unavailable_reason"]
    assert not (tmp_path / "runs_timeseries.csv").exists()  # CPU runs keep no power timeseries


def test_export_parquet_and_jsonl_hold_the_same_rows(results, tmp_path):
    for fmt in ("parquet", "jsonl"):
        out = tmp_path / f"runs.{fmt}"
        proc = run_lem("results", "export", str(results), "-f", fmt, "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        frame = pd.read_parquet(out) if fmt == "parquet" else pd.read_json(out, lines=True)
        assert list(frame.columns) == EXPORT_COLUMNS and len(frame) == 6
        assert set(frame["status"]) == {"done", "failed"}


def test_load_results_dataframe_matches_the_json(results):
    frame = load_results(results)
    data = _results_json(results)
    assert len(frame) == 6 and list(frame.columns) == EXPORT_COLUMNS
    study = json.loads((_study_dir(results) / "manifest.json").read_text())
    entries = {e["result_path"]: e for e in study["entries"]}
    for _, row in frame[frame["status"] == "done"].iterrows():
        d = data[row["experiment_id"]]
        assert row["output_tokens_per_second"] == pytest.approx(d["output_tokens_per_second"])
        assert row["inference_time_s"] == pytest.approx(d["inference_time_s"])
        assert row["output_tokens"] == d["output_tokens"] and row["run_input_tokens"] == d["whole_run"]["input_tokens"]
        assert row["ttft_p50_ms"] == pytest.approx(d["ttft"]["p50_ms"])
        assert row["itl_p99_ms"] == pytest.approx(d["itl"]["p99_ms"])
        assert row["headline_flops"] == pytest.approx(d["windows"][d["measurement_methodology"]]["flops"])
        assert row["prefill_time_s"] == pytest.approx(d["phases"]["prefill"]["time_s"])
        assert row["batch_size"] == d["config"]["pytorch"]["batch_size"]
        assert row["start_time"] == pd.Timestamp(d["start_time"])
        assert pd.isna(row["energy_j"]) and pd.isna(row["energy_per_token_j"])
        if row["experiment_id"] in entries:
            e = entries[row["experiment_id"]]
            assert row["study"] == "rs" and row["study_point"] == e["label"] and row["cycle"] == e["cycle"]
        else:
            assert row["experiment_id"].startswith("single-") and pd.isna(row["study"])
    assert str(frame["energy_j"].dtype) == "Float64"  # typed even when null in every row


def test_compare_shows_relative_differences_computed_from_the_json(results):
    data = _results_json(results)
    a, b = sorted(p.parent for p in _study_dir(results).rglob("result.json"))[:2]
    proc = run_lem("results", "compare", str(a), str(b / "result.json"))
    assert proc.returncode == 0, proc.stderr
    da, db = data[a.name], data[b.name]
    tps = format_relative((db["output_tokens_per_second"] - da["output_tokens_per_second"]) / da["output_tokens_per_second"])
    ttft = format_relative((db["ttft"]["p50_ms"] - da["ttft"]["p50_ms"]) / da["ttft"]["p50_ms"])
    lines = proc.stdout.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("throughput (tok/s)"))
    assert format_value(Value(da["output_tokens_per_second"])) in lines[i]
    assert format_value(Value(db["output_tokens_per_second"])) in lines[i] and tps in lines[i + 1]
    j = next(n for n, line in enumerate(lines) if line.startswith("TTFT p50 (ms)"))
    assert ttft in lines[j + 1]
    (energy_line,) = [line for line in lines if re.search(r"^energy/token \(J\)", line)]
    assert energy_line.count("null") == 2 and "%" not in energy_line


def test_compare_study_shows_mean_and_ci_per_point(results):
    study = _study_dir(results)
    proc = run_lem("results", "compare", str(study))
    assert proc.returncode == 0, proc.stderr
    aggs = json.loads((study / "study_summary.json").read_text())["aggregates"]
    assert len(aggs) == 2
    first, second = aggs
    lines = proc.stdout.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("throughput (tok/s)"))
    m0, m1 = first["output_tokens_per_second"], second["output_tokens_per_second"]
    assert format_value(Value(m0["mean"], m0["ci95"])) in lines[i]
    assert format_value(Value(m1["mean"], m1["ci95"])) in lines[i]
    assert format_relative((m1["mean"] - m0["mean"]) / m0["mean"]) in lines[i + 1]
    # every figure but emissions (no carbon settings), the serving ones (an offline study has none) and the quality
    # ones (no quality section: null, so not shown)
    assert all(METRIC_LABELS[m] in proc.stdout for m in STUDY_METRICS
               if m != "emissions_g" and m not in SERVING_STUDY_METRICS + QUALITY_STUDY_METRICS)
    assert not any(METRIC_LABELS[m] in proc.stdout for m in QUALITY_STUDY_METRICS)
    assert "goodput" not in proc.stdout
    assert "#1 bs=1" in proc.stdout or ("#1" in proc.stdout and "bs=1" in proc.stdout)
    assert "#2  rs: pytorch.batch_size=2" in proc.stdout


def test_show_groups_the_record(results):
    (single,) = [p for p in results.iterdir() if p.name.startswith("single-")]
    proc = run_lem("results", "show", str(single))
    assert proc.returncode == 0, proc.stderr
    for heading in ("energy", "windows (headline: total)", "phases", "TTFT", "throughput", "FLOPs", "warmup",
                    "environment", "quality flags"):
        assert heading in proc.stdout
    assert "null — run is on CPU" in proc.stdout
    assert "null · null" not in proc.stdout and "not measured (energy not measured)" in proc.stdout
    proc = run_lem("results", "show", str(results / "broken-20250101-000000"))
    assert proc.returncode == 0 and "failed" in proc.stdout and "model folder not found" in proc.stdout


def test_show_on_a_study_folder_shows_the_study(results):
    study = _study_dir(results)
    proc = run_lem("results", "show", str(study))
    assert proc.returncode == 0, proc.stderr
    aggs = json.loads((study / "study_summary.json").read_text())["aggregates"]
    assert "study rs · complete · 4/4 runs finished, 0 failed" in proc.stdout
    for a in aggs:
        assert a["label"] in proc.stdout
        assert format_value(Value(a["output_tokens_per_second"]["mean"], a["output_tokens_per_second"]["ci95"])) in proc.stdout
    assert "energy null: run is on CPU" in proc.stdout


def test_report_of_real_runs_is_one_page_that_chromium_renders_cleanly(results, tmp_path):
    from chromium import render

    out = tmp_path / "report.html"
    proc = run_lem("results", "report", str(results), "-o", str(out), "--grid-intensity", "400", "--pue", "1.2")
    assert proc.returncode == 0 and f"wrote {out}" in proc.stdout, proc.stderr
    page = out.read_text(encoding="utf-8")
    assert "study rs" in page and ">pytorch.batch_size</th>" in page and "single runs" in page
    assert "broken-20250101-000000: failed: load: OSError: model folder not found" in page  # warnings section
    assert "energy null: run is on CPU" in page and "400 gCO2e/kWh × PUE 1.2" in page
    rendered = render(out, tmp_path)
    assert rendered.console == [] and "Throughput per configuration" in rendered.dom


def test_plot_writes_pngs_with_unit_labels_and_says_energy_is_null(results, tmp_path):
    proc = run_lem("results", "plot", str(results), "-o", str(tmp_path / "plots"))
    assert proc.returncode == 0, proc.stderr
    png = tmp_path / "plots" / "efficiency.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "throughput (output tokens/s)" in proc.stdout


BAD_INPUT_ARGS = [
    ("results", "list", "/no/such/dir"),
    ("results", "show", "/no/such/dir"),
    ("results", "show", "."),
    ("results", "export", "/no/such/dir"),
    ("results", "export", ".", "--format", "xlsx"),
    ("results", "plot", "/no/such/dir"),
    ("results", "compare", "/no/such/dir", "/no/other"),
    ("results", "report", "/no/such/dir"),
    ("results", "plot", ".", "--format", "gif"),
    ("results", "list", ".", "--sort", "colour"),
    ("results", "compare", ".", ".", "--pue", "1.2"),
    ("results", "export", ".", "--grid-intensity", "-5"),
    ("config", "validate", "/no/such.yaml"),
]


@pytest.mark.parametrize("args", BAD_INPUT_ARGS)
def test_bad_input_is_one_line_and_exit_2(args, tmp_path):
    """The first case through the real ``lem`` process (exit code and stderr as a shell sees them); the others call
    the same entry point in-process, which is all they differ in (a controller start each saved)."""
    if args == BAD_INPUT_ARGS[0]:
        proc = run_lem(*args, cwd=tmp_path)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    else:
        code, stdout, stderr = _lem_in_process(*args, cwd=tmp_path)
    assert code == 2, stdout + stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr


def _lem_in_process(*args: str, cwd: Path) -> tuple[int, str, str]:
    """``main(args)`` of the CLI in this process, in ``cwd``: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def test_corrupt_result_and_single_compare_are_one_line_errors(results, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "result.json").write_text("{\"truncated\": ")
    for args in (("results", "show", str(bad)), ("results", "compare", str(bad), str(bad)),
                 ("results", "compare", str(next(results.rglob("result.json"))))):
        proc = run_lem(*args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_lem("results", "list", str(tmp_path))
    assert proc.returncode == 0 and "not a valid ExperimentResult" in proc.stdout


def test_config_schema_validates_examples_and_rejects_a_bad_config(tmp_path):
    proc = run_lem("config", "schema", "-o", str(tmp_path / "schemas"))
    assert proc.returncode == 0, proc.stderr
    written = {p.name: json.loads(p.read_text()) for p in (tmp_path / "schemas").iterdir()}
    assert set(written) == {"experiment.schema.json", "study.schema.json", "lem-config.schema.json"}
    assert written["lem-config.schema.json"] == schemas()["config"]
    validator = jsonschema.Draft202012Validator(written["lem-config.schema.json"])
    for example in sorted((REPO / "examples").glob("*.yaml")):
        validator.validate(yaml.safe_load(example.read_text()))
    bad = yaml.safe_load("model: x\nn_prompts: 0\npytorch:\n  batchsize: 4\n")
    assert not validator.is_valid(bad)
    study_validator = jsonschema.Draft202012Validator(written["study.schema.json"])
    assert not study_validator.is_valid({"base": {"energy": {"baseline": {"mode": False}}}})  # YAML's bare off


def test_config_init_writes_starters_that_validate(tmp_path):
    for args, name in ((), "lem.yaml"), (("--study",), "study.yaml"), (("--serving",), "serving.yaml"):
        proc = run_lem("config", "init", name, *args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        text = (tmp_path / name).read_text()
        assert text.startswith("#") and "  # " in text  # commented
        proc = run_lem("config", "validate", name, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        jsonschema.validate(yaml.safe_load(text), schemas()["config"])
    proc = run_lem("config", "init", "lem.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "already exists" in proc.stderr
