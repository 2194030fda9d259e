"""`lem config validate` refuses what `lem run` would refuse, every problem at once, before anything is loaded or
written; `config show` shows what would run; a bare `lem run` measures nothing. The real CLI in a subprocess."""

from __future__ import annotations

import pytest
from conftest import run_lem, write_yaml


def _refused(proc, *words):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("jsonl, words", [
    (None, ["prompts.path: file", "not found"]),
    ('{"text": "hello"}\n', ["prompts.field:", "has no non-empty string 'prompt'", "its keys: text"]),
])
def test_a_bad_jsonl_prompts_file_is_refused_by_validate_and_by_run_before_the_model_loads(
        tmp_path, tiny_model_path, jsonl, words):
    if jsonl is not None:
        (tmp_path / "p.jsonl").write_text(jsonl)
    cfg = write_yaml(tmp_path / "j.yaml", f"model: {tiny_model_path}\nprompts:\n  source: jsonl\n  path: p.jsonl\n")
    validated = _refused(run_lem("config", "validate", str(cfg)), *words)
    ran = _refused(run_lem("run", str(cfg), "-o", str(tmp_path / "r")), *words)
    assert validated == ran
    assert not (tmp_path / "r").exists()  # refused before a result folder (or a model load)


@pytest.mark.parametrize("backend, knob", [("pytorch", "pytorch.batch_size"), ("vllm", "vllm.max_num_seqs"),
                                           ("tensorrt", "tensorrt.max_batch_size")])
def test_batch_size_sets_each_backends_batch_knob(tmp_path, tiny_model_path, backend, knob):
    # a batch of 0 is out of range for every knob: the refusal names the field the flag landed on
    proc = run_lem("run", "--model", str(tiny_model_path), "--backend", backend, "--batch-size", "0",
                   "-o", str(tmp_path / "r"))
    _refused(proc, f"{knob}: Input should be greater than or equal to 1")
    assert not (tmp_path / "r").exists()


def test_a_vllm_section_on_a_pytorch_run_is_refused_by_validate(tmp_path, tiny_model_path):
    cfg = write_yaml(tmp_path / "p.yaml", f"model: {tiny_model_path}\nvllm:\n  max_model_len: 512\n")
    _refused(run_lem("config", "validate", str(cfg)), "vllm: settings for backend 'vllm', but the backend is 'pytorch'")


@pytest.fixture
def sweep_study(tmp_path, tiny_model_path):
    return write_yaml(tmp_path / "s.yaml", f"name: s\nbase:\n  model: {tiny_model_path}\n  n_prompts: 2\n"
                                           "sweep:\n  pytorch.batch_size: [2, 0, -1]\n")


def test_a_sweep_with_invalid_points_exits_2_listing_each_unless_allowed(tmp_path, sweep_study):
    line = _refused(run_lem("config", "validate", str(sweep_study)), "2 of 3 point(s) are invalid",
                    "pytorch.batch_size=0:", "pytorch.batch_size=-1:", "--allow-skipped")
    assert "more problem" not in line
    _refused(run_lem("run", str(sweep_study), "-o", str(tmp_path / "r")), "2 of 3 point(s) are invalid")
    assert not (tmp_path / "r").exists()
    allowed = run_lem("config", "validate", str(sweep_study), "--allow-skipped")
    assert allowed.returncode == 0 and "1 point(s)" in allowed.stdout and "2 skipped" in allowed.stdout


@pytest.mark.parametrize("flags, words", [
    (["--batch-size", "4"], "--batch-size: no effect, the study sweeps pytorch.batch_size"),
    (["--name", "x"], "--name: a study's runs are named after the study"),
])
def test_a_flag_with_no_effect_on_a_study_is_refused(tmp_path, tiny_model_path, flags, words):
    study = write_yaml(tmp_path / "s.yaml", f"name: s\nbase:\n  model: {tiny_model_path}\n"
                                            "sweep:\n  pytorch.batch_size: [1, 2]\n")
    _refused(run_lem("run", str(study), *flags, "-o", str(tmp_path / "r")), words)
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
