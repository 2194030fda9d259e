"""The newcomer's path (issue 26): starters that do not collide, output folders made alike by every command that
writes one, and one cache for `make demo` and `.venv/bin/lem`. The real CLI and the real Makefile."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_lem

REPO = Path(__file__).resolve().parents[2]
LEGACY_RESULTS = REPO / "tests" / "fixtures" / "results-1.1"


def test_config_init_serving_after_config_init_writes_serving_yaml(tmp_path):
    assert run_lem("config", "init", cwd=tmp_path).returncode == 0
    proc = run_lem("config", "init", "--serving", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "wrote serving.yaml" in proc.stdout
    assert "scenario: serving" in (tmp_path / "serving.yaml").read_text()
    assert "scenario: serving" not in (tmp_path / "lem.yaml").read_text()  # the first starter is untouched
    assert run_lem("config", "validate", "serving.yaml", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("args, written", [
    (["results", "export", str(LEGACY_RESULTS), "-o", "new/deeper/runs.csv"], "new/deeper/runs.csv"),
    (["config", "reference", "-o", "new/deeper/ref.md"], "new/deeper/ref.md"),
    (["results", "report", str(LEGACY_RESULTS), "-o", "new/deeper/report.html"], "new/deeper/report.html"),
])
def test_an_output_file_in_a_missing_folder_is_written_as_plot_does(tmp_path, args, written):
    proc = run_lem(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / written).is_file()


def test_export_into_a_path_under_a_file_is_still_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = run_lem("results", "export", str(LEGACY_RESULTS), "-o", "afile/runs.csv", cwd=tmp_path)
    assert proc.returncode == 2 and "afile" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "afile").read_text() == "x"


def _lem_cache_of(target: str) -> str:
    """The LEM_CACHE_DIR a Makefile target's commands see (make -n: nothing is run), with none in the caller's
    environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("LEM_CACHE_DIR", "HF_HOME")}
    proc = subprocess.run(["make", "-n", "--no-print-directory", "--eval",
                           '_lem_cache: ; echo "cache=[$(LEM_CACHE_DIR)]"', "--eval", f"{target}: _lem_cache",
                           target], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('echo "cache=')]
    assert len(lines) == 1, proc.stdout + proc.stderr
    return lines[0].split("[", 1)[1].rsplit("]", 1)[0]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_demo_uses_the_cache_that_venv_bin_lem_uses_afterwards():
    # `make demo` and a later `.venv/bin/lem` (no LEM_CACHE_DIR: ~/.cache/llenergymeasure) convert the embedded model
    # into one place; the test targets keep theirs inside the clone
    assert _lem_cache_of("demo") == "" and _lem_cache_of("images") == ""
    assert _lem_cache_of("test-local") == str(REPO / ".cache" / "lem")
    readme = (REPO / "README.md").read_text()
    assert "~/.cache/llenergymeasure/models/" in readme and "converted once into `.cache/lem/models/`" not in readme


def test_a_closed_stdout_ends_a_command_quietly_as_unix_tools_do():
    read_end, write_end = os.pipe()
    os.close(read_end)  # `lem … | head` after head has gone: every write to stdout fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "llenergymeasure", "results", "show",
                               str(LEGACY_RESULTS / "legacy-1-1-20261202-025542")],
                              stdout=write_end, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                              env={**os.environ, "COLUMNS": "80"}, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 128 + signal.SIGPIPE, proc.stderr
    assert proc.stderr == ""  # before: "error: BrokenPipeError; nothing was lost that was already written", exit 1


def test_a_failure_whose_message_names_its_type_says_the_type_once(tmp_path):
    from lem_runner.contract import RunError
    from llenergymeasure.results.discover import load_experiment

    run = tmp_path / "srv-run"
    run.mkdir()
    (run / "error.json").write_text(RunError(error_type="ServerError", phase="warmup",
                                             message="ServerError: warmup request failed").model_dump_json())
    assert load_experiment(run).failure == "warmup: ServerError: warmup request failed"
    (run / "error.json").write_text(RunError(error_type="OSError", phase="load", message="disk full").model_dump_json())
    assert load_experiment(run).failure == "load: OSError: disk full"


def test_results_show_on_a_reused_engine_says_so_and_the_original_load(tmp_path, tiny_model_path):
    import json

    study = tmp_path / "reuse.yaml"
    study.write_text(f"name: reuse\nn_cycles: 1\nengine_reuse: true\nbase:\n  model: {tiny_model_path}\n"
                     "  runner: local\n  n_prompts: 2\n  max_output_tokens: 3\n  force_output_length: true\n"
                     "  warmup: {n_batches: 0}\n  energy: {baseline: {mode: 'off'}}\n"
                     "experiments:\n  - {}\n  - {max_output_tokens: 4}\n")
    out = tmp_path / "r"
    proc = run_lem("run", str(study), "-o", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (study_dir,) = out.iterdir()
    entries = json.loads((study_dir / "manifest.json").read_text())["entries"]
    first, second = (study_dir / e["result_path"] for e in entries)
    engine = json.loads((second / "result.json").read_text())["engine"]
    assert engine["fresh"] is False
    shown = run_lem("results", "show", str(second))
    assert shown.returncode == 0, shown.stderr
    (line,) = [ln for ln in shown.stdout.splitlines() if "model load" in ln]
    assert "0.00 s" not in line and "reused" in line and f"{engine['load_s']:.2f} s" in line, line
    fresh = run_lem("results", "show", str(first))
    (line,) = [ln for ln in fresh.stdout.splitlines() if "model load" in ln]
    assert "reused" not in line
