"""An engine session in one container: the real CPU PyTorch image serving several runs of a study, each result in
its own folder under the mounted study folder, and no container left."""

from __future__ import annotations

import json

import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import RESULT_FILE

pytestmark = pytest.mark.docker


def test_one_container_serves_a_cycle_of_runs(tmp_path, tiny_model_path, cpu_image, no_leftover_containers):
    study = write_yaml(tmp_path / "s.yaml", f"""\
name: dsess
base:
  model: {tiny_model_path}
  runner: docker:{cpu_image.tag}
  n_prompts: 2
  max_output_tokens: 3
  force_output_length: true
  warmup: {{n_batches: 0}}
sweep:
  max_output_tokens: [3, 4, 5]
""")
    proc = run_lem("run", str(study), "-o", str(tmp_path / "r"), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (study_dir,) = (tmp_path / "r").iterdir()
    m = json.loads((study_dir / "manifest.json").read_text())
    assert [e["status"] for e in m["entries"]] == ["done"] * 3 and all(e["runner"] == "docker" for e in m["entries"])
    results = [json.loads((study_dir / e["result_path"] / RESULT_FILE).read_text()) for e in m["entries"]]
    assert [(r["engine"]["fresh"], r["engine"]["runs_served"]) for r in results] == [(True, 0), (False, 1), (False, 2)]
    assert len({r["engine"]["pid"] for r in results}) == 1
    assert [r["whole_run"]["output_tokens"] for r in results] == [6, 8, 10]
    assert all(r["environment"]["image"] == cpu_image.image_id for r in results)
    assert all(r["model_path"] == "/lem/model" for r in results)
    assert not (study_dir / ".sessions").exists()
