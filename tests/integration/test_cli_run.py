"""`lem run` end to end: the real CLI, the real runner subprocess, the tiny model, real files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult, RunError


def _only_dir(root):
    dirs = [p for p in root.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_run_writes_a_valid_result_and_prints_a_summary(tmp_path, tiny_config):
    out = tmp_path / "results"
    proc = run_lem("run", str(tiny_config), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    exp_dir = _only_dir(out)
    result = ExperimentResult.model_validate_json((exp_dir / "result.json").read_text())
    assert result.whole_run.n_requests == 6
    assert result.output_tokens == 6 * 8  # force_output_length
    assert result.whole_run.total_tokens == result.whole_run.input_tokens + result.whole_run.output_tokens > 0
    assert result.output_tokens_per_second > 0
    assert result.ttft is not None and result.ttft.n == 6
    assert result.itl is not None and result.itl.n == 6 * 7
    assert "streamer" in result.latency_method  # every figure says how it was measured
    # no GPU here: energy is null with its reason, never 0
    assert result.total_energy_j is None and result.energy_per_token_j is None
    assert result.energy.unavailable_reason
    assert result.headline.flops and result.headline.flops > 0
    assert result.experiment_id == exp_dir.name
    assert (exp_dir / "config.json").is_file() and (exp_dir / "runner.log").is_file()
    assert not (exp_dir / "error.json").exists()
    assert "output tok/s" in proc.stdout and "null" in proc.stdout


def test_cli_flags_override_the_config_file(tmp_path, tiny_config):
    out = tmp_path / "results"
    proc = run_lem("run", str(tiny_config), "-o", str(out), "-n", "2", "--max-output-tokens", "4", "--name", "flagged")
    assert proc.returncode == 0, proc.stderr
    exp_dir = _only_dir(out)
    assert exp_dir.name.startswith("flagged-")
    result = json.loads((exp_dir / "result.json").read_text())
    assert result["whole_run"]["n_requests"] == 2 and result["output_tokens"] == 8


def _assert_config_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_misspelled_field_exits_2_naming_it(tmp_path, tiny_model_path):
    cfg = write_yaml(tmp_path / "bad.yaml", f"model: {tiny_model_path}\nn_promts: 4\n")
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "r"))
    _assert_config_error(proc, "n_promts", "bad.yaml")
    assert not (tmp_path / "r").exists()


def test_wrong_type_exits_2_naming_the_field_path(tmp_path, tiny_model_path):
    cfg = write_yaml(tmp_path / "bad.yaml", f"model: {tiny_model_path}\npytorch:\n  batch_size: lots\n")
    _assert_config_error(run_lem("run", str(cfg)), "pytorch.batch_size")


def test_missing_model_exits_2_naming_it(tmp_path):
    cfg = write_yaml(tmp_path / "bad.yaml", "model: /nonexistent/model-folder\n")
    _assert_config_error(run_lem("run", str(cfg), "-o", str(tmp_path / "r")), "model", "/nonexistent/model-folder")
    assert not (tmp_path / "r").exists()


def test_broken_yaml_and_missing_file_exit_2(tmp_path):
    cfg = write_yaml(tmp_path / "broken.yaml", "model: [unclosed\n")
    _assert_config_error(run_lem("config", "validate", str(cfg)), "broken.yaml", "invalid YAML")
    _assert_config_error(run_lem("run", str(tmp_path / "absent.yaml")), "absent.yaml", "not found")


def test_runner_failure_exits_1_with_error_json(tmp_path, tiny_model_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')  # passes the controller's check, no weights
    cfg = write_yaml(tmp_path / "c.yaml", f"model: {broken}\nn_prompts: 2\n")
    out = tmp_path / "results"
    proc = run_lem("run", str(cfg), "-o", str(out))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "run failed during load" in proc.stderr
    exp_dir = _only_dir(out)
    err = RunError.model_validate_json((exp_dir / "error.json").read_text())
    assert err.phase == "load" and err.message
    assert not (exp_dir / "result.json").exists()


def test_config_validate_and_show(tmp_path, tiny_config):
    ok = run_lem("config", "validate", str(tiny_config))
    assert ok.returncode == 0 and "valid" in ok.stdout
    shown = run_lem("config", "show", str(tiny_config))
    assert shown.returncode == 0
    assert "batch_size: 3" in shown.stdout and "max_input_tokens: 512" in shown.stdout  # defaults filled in


def test_version():
    proc = run_lem("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("lem ")


def test_ctrl_c_stops_the_runner_and_exits_130(tmp_path, tiny_model_path):
    cfg = write_yaml(tmp_path / "long.yaml", f"model: {tiny_model_path}\nn_prompts: 400\nmax_output_tokens: 64\n"
                                             "force_output_length: true\nwarmup:\n  n_batches: 0\n")
    out = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "llenergymeasure", "run", str(cfg), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # wait until the measurement window is open
        if "measuring" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    exp_dir = _only_dir(out)
    err = RunError.model_validate_json((exp_dir / "error.json").read_text())
    assert err.phase == "measure" and err.status == "interrupted" and "stopped during measure" in err.message
    assert not (exp_dir / "result.json").exists()


def test_a_vllm_option_vllm_would_reject_exits_2_at_load(tmp_path, tiny_model_path):
    cfg = write_yaml(tmp_path / "v.yaml", f"model: {tiny_model_path}\nbackend: vllm\nvllm:\n  tensor_parallel_size: 4\n")
    _assert_config_error(run_lem("run", str(cfg), "-o", str(tmp_path / "r")), "devices", "tensor_parallel_size")
    assert not (tmp_path / "r").exists()


def test_error_text_with_brackets_is_printed_verbatim(tmp_path):
    """Messages are data, not rich markup: '[x]' must survive (it once swallowed 'llenergymeasure[vllm]')."""
    cfg = write_yaml(tmp_path / "b.yaml", 'model: "embedded:nope[x]"\n')
    proc = run_lem("run", str(cfg))
    _assert_config_error(proc, "embedded:nope[x]")
    assert proc.stdout == ""  # nothing announced for a run that never started
