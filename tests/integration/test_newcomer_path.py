"""The newcomer's path (issue 26): starters that do not collide, output folders made alike by every command that
writes one, and one cache for `make demo` and `.venv/bin/lem`. The real CLI and the real Makefile."""

from __future__ import annotations

import os
import shutil
import subprocess
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
