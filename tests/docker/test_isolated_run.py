"""`lem run --isolated` against the real engine: the runner in the CPU PyTorch image, results on the mounted volume."""

from __future__ import annotations

import json

import pytest
from conftest import run_lem, write_tiny_config, write_yaml
from lem_runner.contract import ExperimentResult, RunError
from llenergymeasure.images.catalog import LABEL_MANAGED

pytestmark = pytest.mark.docker


def _result_dir(root):
    (d,) = [p for p in root.iterdir() if p.is_dir()]
    return d


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, tiny_model_path, engine, cpu_image):
    """The tiny config run once locally and once --isolated (a folder holding local/ and isolated/), shared by the
    tests that read them; asserts the isolated run left no lem-managed container."""
    root = tmp_path_factory.mktemp("isolated-run")
    config = write_tiny_config(root, tiny_model_path)
    local = run_lem("run", str(config), "-o", str(root / "local"))
    assert local.returncode == 0, local.stderr
    before = {c.id for c in engine.containers.list(all=True, filters={"label": LABEL_MANAGED})}
    isolated = run_lem("run", str(config), "-o", str(root / "isolated"), "--isolated")
    after = {c.id for c in engine.containers.list(all=True, filters={"label": LABEL_MANAGED})}
    assert isolated.returncode == 0, isolated.stderr
    assert after - before == set(), "lem left containers behind"
    return root


def test_isolated_run_gives_the_same_tokens_as_local(tiny_runs, cpu_image):
    a = ExperimentResult.model_validate_json((_result_dir(tiny_runs / "local") / "result.json").read_text())
    b = ExperimentResult.model_validate_json((_result_dir(tiny_runs / "isolated") / "result.json").read_text())
    counts = ("n_requests", "input_tokens", "output_tokens", "total_tokens")
    assert [getattr(b.whole_run, k) for k in counts] == [getattr(a.whole_run, k) for k in counts]
    assert b.output_tokens == a.output_tokens and b.flops.total == a.flops.total
    assert b.measurement_config_hash == a.measurement_config_hash
    assert b.environment.image == cpu_image.image_id and a.environment.image is None
    assert b.model_path == "/lem/model"
    assert b.environment.libraries["transformers"] == a.environment.libraries["transformers"]
    assert b.ttft is not None and b.itl is not None
    assert b.total_energy_j is None and b.energy.unavailable_reason


def test_failing_runner_exits_1_with_error_json_and_no_container_left(tmp_path, cpu_image, no_leftover_containers):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')
    cfg = write_yaml(tmp_path / "c.yaml", f"model: {broken}\nn_prompts: 2\n")
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "r"), "--isolated")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    exp_dir = _result_dir(tmp_path / "r")
    err = RunError.model_validate_json((exp_dir / "error.json").read_text())
    assert err.phase == "load" and "/lem/model" in err.message + (err.traceback or "")
    assert not (exp_dir / "result.json").exists()
    assert (exp_dir / "runner.log").stat().st_size > 0  # the container's stderr is kept beside the error


def test_request_written_for_the_container_uses_container_paths(tiny_runs, cpu_image):
    request = json.loads((_result_dir(tiny_runs / "isolated") / "request.json").read_text())
    assert request["model_path"] == "/lem/model" and request["image"] == cpu_image.image_id


def test_ctrl_c_stops_the_container_and_leaves_none(tmp_path, tiny_model_path, cpu_image, no_leftover_containers):
    import signal
    import subprocess
    import sys

    cfg = write_yaml(tmp_path / "long.yaml", f"model: {tiny_model_path}\nn_prompts: 400\nmax_output_tokens: 64\n"
                                             "force_output_length: true\nwarmup:\n  n_batches: 0\n")
    proc = subprocess.Popen([sys.executable, "-m", "llenergymeasure", "run", str(cfg), "-o", str(tmp_path / "r"),
                             "--isolated"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # the measurement window is open inside the container
        if "measuring" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    err = RunError.model_validate_json((_result_dir(tmp_path / "r") / "error.json").read_text())
    # docker stop → SIGTERM in the container → the runner wrote that it was interrupted, and when
    assert err.phase == "measure" and err.status == "interrupted" and err.error_type == "SIGTERM", err
