"""Every command's output on an 80-column terminal (COLUMNS=80): real `lem run`s of the tiny model — an offline study
(2 points x 2 cycles), a serving study on lem's transformers server (2 rates x 2 cycles), a single run — and a failed
run's folder, then the real CLI over them. No line is longer than 80, nothing is cut with "…", and every identifier a
user copies (run names, folders, point labels, field names, image names, failure reasons) is printed whole on one
line (a failure reason, which has spaces, whole once its lines are joined)."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import RunError

WIDTH = 80
ENV = {"COLUMNS": str(WIDTH)}
REASON = "model folder not found: the path /nowhere/model does not exist on this host"


@pytest.fixture(scope="module")
def made(tiny_model_path) -> dict:
    """The folders and the end tables `lem run` printed. A short root (/tmp/w…) so that paths fit one line."""
    root = Path(tempfile.mkdtemp(prefix="w", dir="/tmp"))
    out = root / "r"
    base = f"""\
  model: {tiny_model_path}
  max_output_tokens: 4
  force_output_length: true
  energy: {{baseline: {{mode: "off"}}}}
"""
    offline = write_yaml(root / "off.yaml", f"name: bs\nn_cycles: 2\nbase:\n{base}  n_prompts: 4\n"
                         "sweep:\n  pytorch.batch_size: [1, 2]\n")
    serving = write_yaml(root / "srv.yaml", f"""name: rates
n_cycles: 2
base:
{base}  scenario: serving
  device: cpu
  dtype: float32
  runner: local
  pytorch: {{batch_size: 8}}
  serving:
    arrival: poisson
    n_requests: 6
    warmup_requests: 1
    input_tokens: {{dist: uniform, min: 4, max: 12}}
    slo: {{ttft_ms: 60000, tpot_ms: 60000}}
sweep:
  serving.rate: [4, 16]
""")
    ends = {}
    for name, cfg in (("off", offline), ("srv", serving)):
        proc = run_lem("run", str(cfg), "-o", str(out), env=ENV, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        ends[name] = proc.stdout
    proc = run_lem("run", "-m", str(tiny_model_path), "-n", "2", "--max-output-tokens", "4", "--name", "single",
                   "-o", str(out), env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ends["single"] = proc.stdout
    failed = out / "broken-20250101-000000"
    failed.mkdir()
    (failed / "config.json").write_text(json.dumps({"model": "/nowhere/model", "name": "broken"}))
    (failed / "error.json").write_text(RunError(experiment_id="broken", error_type="OSError", message=REASON,
                                                phase="load").model_dump_json())
    yield {"root": root, "out": out, "offline": offline, "serving": serving, "ends": ends,
           "off": next(out.glob("bs-*")), "srv": next(out.glob("rates-*"))}
    shutil.rmtree(root, ignore_errors=True)


def _runs(study: Path) -> list[str]:
    return sorted(p.name for p in study.iterdir() if (p / "result.json").is_file())


def _labels(study: Path) -> list[str]:
    return [a["label"] for a in json.loads((study / "study_summary.json").read_text())["aggregates"]]


def check_fits(text: str, identifiers: list[str] = (), phrases: list[str] = ()) -> None:
    """No line over WIDTH, nothing cut with an ellipsis; each identifier whole within one line; each phrase (text
    with spaces) whole once the lines are joined."""
    lines = text.splitlines()
    long = [line for line in lines if len(line) > WIDTH]
    assert not long, "\n".join(long)
    assert "…" not in text, text
    for ident in identifiers:
        assert any(ident in line for line in lines), f"{ident!r} not whole on one line:\n{text}"
    joined = " ".join(re.sub(r"[│┃]", " ", line).strip() for line in lines)
    joined = " ".join(joined.split())
    for phrase in phrases:
        assert " ".join(phrase.split()) in joined, f"{phrase!r} cut:\n{text}"


def _lem(*args: str) -> str:
    proc = run_lem(*args, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_study_end_tables_fit(made):
    for name in ("off", "srv"):
        study = made[name]
        check_fits(made["ends"][name], [*_labels(study), str(study / "study_summary.json"), "J/token"])
    # the serving figures in its table (headers break between words: look for the first word of each)
    assert all(word in made["ends"]["srv"] for word in ("goodput", "TPOT", "achieved"))
    check_fits(made["ends"]["single"])


def test_dry_run_and_doctor_fit(made):
    check_fits(_lem("run", str(made["offline"]), "--dry-run"), ["pytorch.batch_size=1", "pytorch.batch_size=2"])
    check_fits(_lem("run", str(made["serving"]), "--dry-run"), ["serving.rate=4", "serving.rate=16"])
    from llenergymeasure.doctor import run_checks

    tokens = [t for c in run_checks() for t in (c.name + " " + c.fix).split() if "/" in t or "." in t or "-" in t]
    check_fits(_lem("doctor"), [t.strip("`'(),") for t in tokens])


def test_results_list_keeps_names_and_reasons_whole(made):
    out = made["out"]
    text = _lem("results", "list", str(out))
    names = [f"{s.name.split('-')[0]}/{r}" for s in (made["off"], made["srv"]) for r in _runs(s)]
    check_fits(text, [*names, "broken-20250101-000000"], [f"failed: load: OSError: {REASON}"])


def test_results_show_and_compare_of_studies_fit(made):
    for name in ("off", "srv"):
        study = made[name]
        check_fits(_lem("results", "show", str(study)), [*_labels(study), str(study)])
        check_fits(_lem("results", "compare", str(study)), _labels(study))
    srv = _lem("results", "show", str(made["srv"]))
    assert all(word in srv for word in ("goodput", "TPOT", "achieved"))
    assert "goodput" in _lem("results", "compare", str(made["srv"]))


def test_results_show_of_runs_and_config_commands_fit(made):
    srv_run = made["srv"] / _runs(made["srv"])[0]
    text = _lem("results", "show", str(srv_run))
    check_fits(text, [srv_run.name], ["TTFT ≤ 60000 ms, TPOT ≤ 60000 ms"])
    assert "{" not in text  # the SLO in words, not a dict
    check_fits(_lem("results", "show", str(made["out"] / "broken-20250101-000000")), [], [REASON])
    single = next(made["out"].glob("single-*"))
    check_fits(_lem("results", "show", str(single)), [single.name])
    check_fits(_lem("results", "compare", str(single), str(made["off"] / _runs(made["off"])[0])))
    check_fits(_lem("config", "validate", str(made["offline"])))
    check_fits(_lem("results", "plot", str(made["out"]), "-o", str(made["root"] / "plots")), ["serving.png"])


def test_help_fits_with_room_for_its_descriptions():
    text = _lem("run", "--help")
    check_fits(text, ["--max-output-tokens", "--lock-timeout"])
    # each option's description gets a real column, not a sliver (was ~26 characters at 80)
    desc = [line for line in text.splitlines() if "--model" in line][0]
    assert len(desc.split("<str>")[1].strip(" │")) >= 35, desc
    for cmd in (("--help",), ("results", "--help"), ("config", "--help"), ("results", "list", "--help")):
        check_fits(_lem(*cmd))


def test_config_show_leaves_out_sections_the_experiment_does_not_use(made):
    offline = _lem("config", "show", str(made["offline"]))
    assert "\nslurm:" not in offline and "\nserving:" not in offline
    assert "# not shown, unused here (runner auto, scenario offline): slurm:, serving:" in offline
    serving = _lem("config", "show", str(made["serving"]))
    assert "\nserving:" in serving and "\nslurm:" not in serving
