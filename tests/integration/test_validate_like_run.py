"""`lem config validate` refuses what `lem run` would refuse, every problem at once, before anything is loaded or
written; `config show` shows what would run; a bare `lem run` measures nothing. The real CLI in a subprocess."""

from __future__ import annotations

import pytest
from conftest import refused_in_one_line, run_lem, write_yaml


@pytest.mark.parametrize("jsonl, words", [
    (None, ["prompts.path: file", "not found"]),
    ('{"text": "hello"}\n', ["prompts.field:", "has no non-empty string 'prompt'", "its keys: text"]),
])
def test_a_bad_jsonl_prompts_file_is_refused_by_validate_and_by_run_before_the_model_loads(
        tmp_path, tiny_model_path, jsonl, words):
    if jsonl is not None:
        (tmp_path / "p.jsonl").write_text(jsonl)
    cfg = write_yaml(tmp_path / "j.yaml", f"model: {tiny_model_path}\nprompts:\n  source: jsonl\n  path: p.jsonl\n")
    validated = refused_in_one_line(run_lem("config", "validate", str(cfg)), *words)
    ran = refused_in_one_line(run_lem("run", str(cfg), "-o", str(tmp_path / "r")), *words)
    assert validated == ran
    assert not (tmp_path / "r").exists()  # refused before a result folder (or a model load)


@pytest.mark.parametrize("backend, knob", [("pytorch", "pytorch.batch_size"), ("vllm", "vllm.max_num_seqs"),
                                           ("tensorrt", "tensorrt.max_batch_size")])
def test_batch_size_sets_each_backends_batch_knob(tmp_path, tiny_model_path, backend, knob):
    # a batch of 0 is out of range for every knob: the refusal names the field the flag landed on
    proc = run_lem("run", "--model", str(tiny_model_path), "--backend", backend, "--batch-size", "0",
                   "-o", str(tmp_path / "r"))
    refused_in_one_line(proc, f"{knob}: Input should be greater than or equal to 1")
    assert not (tmp_path / "r").exists()


def test_a_vllm_section_on_a_pytorch_run_is_refused_by_validate(tmp_path, tiny_model_path):
    cfg = write_yaml(tmp_path / "p.yaml", f"model: {tiny_model_path}\nvllm:\n  max_model_len: 512\n")
    refused_in_one_line(run_lem("config", "validate", str(cfg)), "vllm: settings for backend 'vllm', but the backend is 'pytorch'")


@pytest.fixture
def sweep_study(tmp_path, tiny_model_path):
    return write_yaml(tmp_path / "s.yaml", f"name: s\nbase:\n  model: {tiny_model_path}\n  n_prompts: 2\n"
                                           "sweep:\n  pytorch.batch_size: [2, 0, -1]\n")


def test_a_sweep_with_invalid_points_exits_2_listing_each_unless_allowed(tmp_path, sweep_study):
    line = refused_in_one_line(run_lem("config", "validate", str(sweep_study)), "2 of 3 point(s) are invalid",
                    "pytorch.batch_size=0:", "pytorch.batch_size=-1:", "--allow-skipped")
    assert "more problem" not in line
    refused_in_one_line(run_lem("run", str(sweep_study), "-o", str(tmp_path / "r")), "2 of 3 point(s) are invalid")
    assert not (tmp_path / "r").exists()
    allowed = run_lem("config", "validate", str(sweep_study), "--allow-skipped")
    assert allowed.returncode == 0 and "1 point(s)" in allowed.stdout and "2 skipped" in allowed.stdout


@pytest.mark.parametrize("flags, words", [
    (["--batch-size", "4"], "--batch-size: no effect, the study sweeps pytorch.batch_size"),
    (["--name", "x"], "--name: a study's runs are named after the study"),
])
def test_a_flag_with_no_effect_on_a_study_isrefused_in_one_line(tmp_path, tiny_model_path, flags, words):
    study = write_yaml(tmp_path / "s.yaml", f"name: s\nbase:\n  model: {tiny_model_path}\n"
                                            "sweep:\n  pytorch.batch_size: [1, 2]\n")
    refused_in_one_line(run_lem("run", str(study), *flags, "-o", str(tmp_path / "r")), words)
    assert not (tmp_path / "r").exists()


def test_config_show_expands_a_study_and_shows_only_the_selected_backend(tmp_path, tiny_model_path):
    study = write_yaml(tmp_path / "s.yaml", f"name: s\nbase:\n  model: {tiny_model_path}\n  vllm:\n"
                                            "    max_model_len: 1024\nsweep:\n  backend: [pytorch, vllm]\n")
    shown = run_lem("config", "show", str(study))
    assert shown.returncode == 0, shown.stderr
    assert "# point 1: backend=pytorch" in shown.stdout and "# point 2: backend=vllm" in shown.stdout
    first, second = shown.stdout.split("# point 2")
    assert "batch_size:" in first and "vllm:" not in first and "tensorrt:" not in first
    assert "max_model_len: 1024" in second and "pytorch:" not in second
    single = write_yaml(tmp_path / "e.yaml", f"model: {tiny_model_path}\n")
    one = run_lem("config", "show", str(single))
    assert one.returncode == 0 and "pytorch:" in one.stdout
    assert "vllm:" not in one.stdout and "tensorrt:" not in one.stdout


def test_a_bare_lem_run_measures_nothing_and_says_how_to_start(tmp_path):
    proc = run_lem("run", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "nothing was measured" in proc.stdout and "embedded:SmolLM2-135M-Instruct on pytorch" in proc.stdout
    assert "lem run --model embedded:SmolLM2-135M-Instruct" in proc.stdout
    assert not (tmp_path / "results").exists()
    flags = run_lem("run", "-n", "4", cwd=tmp_path)  # flags without a model are not a request either
    assert flags.returncode == 2 and "lem run --model embedded:SmolLM2-135M-Instruct --n-prompts 4" in flags.stdout


def test_config_init_study_writes_its_own_default_file(tmp_path):
    assert run_lem("config", "init", cwd=tmp_path).returncode == 0
    proc = run_lem("config", "init", "--study", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "study.yaml").is_file() and "base:" in (tmp_path / "study.yaml").read_text()
    assert run_lem("config", "validate", str(tmp_path / "study.yaml")).returncode == 0


# --- issue 26: validate refuses what run would, before anything is written ---------------------------------------


def _no_gpu_here() -> bool:
    from llenergymeasure.host.inventory import gpu_count

    return gpu_count() == 0


def test_a_missing_model_folder_is_refused_by_validate_as_by_run_naming_the_file(tmp_path):
    cfg = write_yaml(tmp_path / "m.yaml", "model: ./no-such-model\nn_prompts: 2\n")
    validated = refused_in_one_line(run_lem("config", "validate", str(cfg)), "m.yaml", "model: folder", "no-such-model",
                         "does not exist")
    ran = refused_in_one_line(run_lem("run", str(cfg), "-o", str(tmp_path / "r")), "m.yaml", "model: folder")
    assert validated == ran and not (tmp_path / "r").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "s.yaml").write_text(f"name: s\nbase: {{model: {empty}}}\nsweep: {{pytorch.batch_size: [1, 2]}}\n")
    refused_in_one_line(run_lem("config", "validate", str(tmp_path / "s.yaml")), "has no config.json")


@pytest.mark.skipif(not _no_gpu_here(), reason="NVML sees a GPU on this host")
@pytest.mark.parametrize("setting, words", [
    ("device: cuda\n", ["device: 'cuda' needs an NVIDIA GPU", "NVML sees none"]),
    ("energy: {sampler: nvml}\n", ["energy.sampler: 'nvml' needs an NVIDIA GPU"]),
])
def test_a_gpu_run_on_a_host_without_one_is_refused_up_front(tmp_path, tiny_model_path, setting, words):
    cfg = write_yaml(tmp_path / "g.yaml", f"model: {tiny_model_path}\nn_prompts: 2\nmax_output_tokens: 2\n{setting}")
    validated = refused_in_one_line(run_lem("config", "validate", str(cfg)), "g.yaml", *words)
    ran = refused_in_one_line(run_lem("run", str(cfg), "-o", str(tmp_path / "r")), "g.yaml", *words)
    assert validated == ran
    assert not (tmp_path / "r").exists()  # refused before the model loaded or a result folder was made
    study = write_yaml(tmp_path / "s.yaml", f"name: s\nbase:\n  model: {tiny_model_path}\n  "
                                            f"{setting.replace(chr(10), chr(10) + '  ').rstrip()}\n"
                                            "sweep: {pytorch.batch_size: [1, 2]}\n")
    refused_in_one_line(run_lem("run", str(study), "-o", str(tmp_path / "r")), "s.yaml", *words)
    assert not (tmp_path / "r").exists()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_serving_endpoint_nothing_answers_at_is_refused_before_anything_is_written(tmp_path, tiny_model_path):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    cfg = write_yaml(tmp_path / "e.yaml", f"model: {tiny_model_path}\nn_prompts: 2\nmax_output_tokens: 2\n"
                                          f"scenario: serving\nserving: {{rate: 2, endpoint: '{url}'}}\n")
    proc = run_lem("run", str(cfg), "-o", str(tmp_path / "r"))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and "serving.endpoint: nothing answers at " + url in lines[0], lines
    assert "e.yaml" in lines[0] and not (tmp_path / "r").exists()
    validated = run_lem("config", "validate", str(cfg))  # valid; the server may be started before the run
    assert validated.returncode == 0 and "note: serving.endpoint: nothing answers" in validated.stdout
    dry = run_lem("run", str(cfg), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "lem starts no server" in dry.stdout and url in dry.stdout
    assert "MiB" not in dry.stdout  # no memory estimate for a server lem does not start


def test_an_slo_bound_below_any_plausible_latency_is_warned_about(tmp_path, tiny_model_path):
    cfg = write_yaml(tmp_path / "slo.yaml", f"model: {tiny_model_path}\nscenario: serving\n"
                                            "serving: {rate: 2, slo: {ttft_ms: 0.5, tpot_ms: 50}}\n")
    validated = run_lem("config", "validate", str(cfg))
    assert validated.returncode == 0, validated.stderr
    warned = [ln for ln in validated.stdout.splitlines() if ln.startswith("warning:")]
    assert len(warned) == 1 and "serving.slo.ttft_ms: 0.5 ms is below any plausible latency" in warned[0]
    assert "500 if you meant 0.5 s" in warned[0]
    dry = run_lem("run", str(cfg), "--dry-run")
    assert "warning: serving.slo.ttft_ms: 0.5 ms" in dry.stderr
    fine = write_yaml(tmp_path / "ok.yaml", f"model: {tiny_model_path}\nscenario: serving\n"
                                            "serving: {rate: 2, slo: {ttft_ms: 200, tpot_ms: 50}}\n")
    assert "warning" not in run_lem("config", "validate", str(fine)).stdout


def test_a_run_stopped_by_its_timeout_is_listed_as_failed_by_timeout(tmp_path, tiny_model_path):
    cfg = write_yaml(tmp_path / "t.yaml", f"model: {tiny_model_path}\nn_prompts: 64\nmax_output_tokens: 512\n"
                                          "force_output_length: true\n")
    out = tmp_path / "r"
    proc = run_lem("run", str(cfg), "-o", str(out), "--timeout", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "timeout after 2 s" in proc.stderr.splitlines()[-1]
    (run_dir,) = out.iterdir()
    import json

    error = json.loads((run_dir / "error.json").read_text())
    assert error["error_type"] == "Timeout" and error["status"] == "failed" and error["phase"]
    listed = run_lem("results", "list", str(out))
    assert "failed" in listed.stdout and "incomplete" not in listed.stdout, listed.stdout
    shown = run_lem("results", "show", str(run_dir))
    assert "failed" in shown.stdout and "timeout after 2 s" in shown.stdout, shown.stdout


def test_a_bad_task_jsonl_is_refused_by_validate_and_by_run_before_the_model_loads(tmp_path, tiny_model_path):
    (tmp_path / "mc.jsonl").write_text('{"question": "q", "choices": ["a", "b"], "answer": 0}\n'
                                       '{"question": "q", "choices": ["a", "b"], "answer": 5}\n')
    cfg = write_yaml(tmp_path / "t.yaml", f"model: {tiny_model_path}\nquality:\n  task:\n    path: mc.jsonl\n")
    words = ["quality.task.path:", "mc.jsonl:2: 'answer' must be an index into choices (0..1), not 5"]
    validated = refused_in_one_line(run_lem("config", "validate", str(cfg)), *words)
    assert validated == refused_in_one_line(run_lem("run", str(cfg), "-o", str(tmp_path / "r")), *words)
    assert not (tmp_path / "r").exists()
