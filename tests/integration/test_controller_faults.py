"""Controller faults with no Docker engine at all (DOCKER_HOST points at a socket nobody serves) and with no NVML.

- No engine: a single isolated run and an isolated study both stop before anything is written, with one line that
  says how to start one, and exit 3 (distinct from a failed run's 1 and bad input's 2). A study stopped part-way
  stays resumable: resuming it isolated without an engine is refused the same way and changes nothing; resumed
  once it can run, it finishes.
- No NVML (this machine has no NVIDIA driver): the run completes, energy is null with the reason, never 0.
(Missing or stale images need a live engine: tests/docker/test_images.py and tests/docker/test_containment.py.)
"""

from __future__ import annotations

import json

import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult

DEAD = {"DOCKER_HOST": "unix:///nonexistent/lem-tests/docker.sock"}
FAST = "  n_prompts: 1\n  max_output_tokens: 2\n  force_output_length: true\n  warmup: {n_batches: 0}\n"


def _one_line(proc) -> str:
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_no_engine_stops_an_isolated_run_before_anything_is_written(tmp_path, tiny_config):
    out = tmp_path / "r"
    proc = run_lem("run", str(tiny_config), "-o", str(out), "--isolated", env=DEAD)
    assert proc.returncode == 3
    line = _one_line(proc)
    assert "no Docker engine answers" in line and "make docker-up" in line and "DOCKER_HOST" in line
    assert not out.exists()


def test_no_engine_leaves_a_study_resumable(tmp_path, tiny_model_path):
    # a model folder that passes validation (it has a config.json) but holds no weights: its run fails in load
    (tmp_path / "missing-model").mkdir()
    (tmp_path / "missing-model" / "config.json").write_text('{"model_type": "llama", "vocab_size": 512}')
    study = write_yaml(tmp_path / "s.yaml", f"""\
name: noengine
order: sequential
base:
  model: {tiny_model_path}
{FAST}experiments:
  - model: {tmp_path / "missing-model"}
  - seed: 7
""")
    out = tmp_path / "r"
    fresh = run_lem("run", str(study), "-o", str(out), "--isolated", env=DEAD)
    assert fresh.returncode == 3 and "no Docker engine answers" in _one_line(fresh)
    assert not out.exists()

    stopped = run_lem("run", str(study), "-o", str(out), "--fail-fast")  # run 1 fails: stopped, resumable
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    (study_dir,) = out.iterdir()
    before = (study_dir / "manifest.json").read_text()
    assert json.loads(before)["status"] == "stopped"

    refused = run_lem("run", str(study), "-o", str(out), "--resume", str(study_dir), "--isolated", env=DEAD)
    assert refused.returncode == 3 and "no Docker engine answers" in _one_line(refused)
    assert (study_dir / "manifest.json").read_text() == before  # untouched: still resumable

    resumed = run_lem("run", str(study), "-o", str(out), "--resume", str(study_dir))
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr  # run 1 stays failed (no --retry-failed)
    m = json.loads((study_dir / "manifest.json").read_text())
    assert m["status"] == "complete" and [e["status"] for e in m["entries"]] == ["failed", "done"]


def test_without_nvml_the_run_completes_with_energy_null_and_the_reason(tmp_path, tiny_model_path):
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        missing = str(exc)
    else:
        pynvml.nvmlShutdown()
        pytest.skip("NVML works on this machine: the fault cannot be shown here")
    cfg = write_yaml(tmp_path / "c.yaml", f"model: {tiny_model_path}\n" + FAST.replace("  ", ""))
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (folder,) = (tmp_path / "r").iterdir()
    result = ExperimentResult.model_validate_json((folder / "result.json").read_text())
    assert result.output_tokens == 2
    assert result.total_energy_j is None and result.energy_per_token_j is None
    assert result.energy.unavailable_reason and "NVML" in result.energy.unavailable_reason
    assert "null" in proc.stdout and missing  # the summary says null, not 0
