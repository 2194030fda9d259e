"""Sweeps users write: dependent groups crossed with the sweep axes, ``base:`` as the path of an experiment file, and
``--cycles`` / ``--order`` on the command line — each validated like the file's own fields (exit 2 naming it)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from conftest import write_yaml
from llenergymeasure.cli.app import main
from llenergymeasure.plan import RunOptions, plan_study
from llenergymeasure.study import expand_study, load_study

MODEL = "lem-tests/groups-model"  # a hub id, never loaded: these tests plan, they do not run (a folder must exist)


def _lem(*args: str) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(list(args))
    return code, err.getvalue() + out.getvalue()


def _study(tmp_path: Path, body: str, name: str = "s.yaml") -> Path:
    return write_yaml(tmp_path / name, body)


GROUPED = f"""\
name: grp
base:
  model: {MODEL}
  backend: vllm
  n_prompts: 2
  vllm: {{quantization: fp8}}
sweep:
  max_output_tokens: [4, 8, 16]
groups:
  quant:
    - {{vllm.quantization: awq, dtype: float16}}
    - {{vllm.quantization: null, dtype: bfloat16}}
"""


def test_a_group_is_crossed_with_the_sweep_and_applies_its_fields_together(tmp_path):
    expansion = expand_study(load_study(_study(tmp_path, GROUPED)), "s.yaml")
    seen = {(p.config.max_output_tokens, p.config.vllm.quantization, p.config.dtype) for p in expansion.points}
    # 3 axis values x 2 alternatives; a null sets the field (the base's fp8 is gone), never mixes with the other
    assert seen == {(n, q, d) for n in (4, 8, 16) for q, d in (("awq", "float16"), (None, "bfloat16"))}
    assert len(expansion.points) == 6 and not expansion.skipped


def test_two_groups_cross_each_other(tmp_path):
    body = GROUPED.replace("sweep:\n  max_output_tokens: [4, 8, 16]\n", "") + """\
  lengths:
    - {max_input_tokens: 32, max_output_tokens: 4}
    - {max_input_tokens: 64, max_output_tokens: 8}
    - {max_input_tokens: 128, max_output_tokens: 16}
"""
    expansion = expand_study(load_study(_study(tmp_path, body)), "s.yaml")
    pairs = {(p.config.max_input_tokens, p.config.max_output_tokens) for p in expansion.points}
    assert len(expansion.points) == 6 and pairs == {(32, 4), (64, 8), (128, 16)}


def test_a_group_key_that_is_not_a_config_field_exits_2_naming_it(tmp_path):
    path = _study(tmp_path, GROUPED.replace("vllm.quantization: awq", "vllm.quantisation: awq"))
    code, text = _lem("run", str(path), "-o", str(tmp_path / "r"))
    assert code == 2 and "groups.quant[1]" in text and "'vllm.quantisation' is not a config field" in text
    assert "did you mean 'vllm.quantization'" in text and not (tmp_path / "r").exists()
    code, text = _lem("config", "validate", str(path))
    assert code == 2 and "vllm.quantisation" in text  # validate catches it as run does


def test_a_group_that_sets_a_sweep_axis_exits_2_naming_both(tmp_path):
    path = _study(tmp_path, GROUPED.replace("max_output_tokens: [4, 8, 16]", "dtype: [float16, float32]"))
    code, text = _lem("run", str(path), "-o", str(tmp_path / "r"))
    assert code == 2 and "groups.quant: sets 'dtype', which the sweep axis 'dtype' also sets" in text
    section = _study(tmp_path, GROUPED.replace("max_output_tokens: [4, 8, 16]", "vllm: [{max_num_seqs: 4}]"), "v.yaml")
    code, text = _lem("run", str(section), "-o", str(tmp_path / "r"))  # a section axis holds the group's field
    assert code == 2 and "sets 'vllm.quantization', which the sweep axis 'vllm' also sets" in text


def test_an_empty_group_or_alternative_exits_2(tmp_path):
    for groups, word in (("groups: {quant: []}", "has no alternatives"), ("groups: {quant: [{}]}", "sets nothing")):
        path = _study(tmp_path, f"base: {{model: {MODEL}}}\n{groups}\n")
        code, text = _lem("run", str(path), "-o", str(tmp_path / "r"))
        assert code == 2 and "groups" in text and word in text, text


def test_base_names_an_experiment_file_relative_to_the_study(tmp_path):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "prompts.jsonl").write_text('{"prompt": "hello"}\n')
    write_yaml(tmp_path / "exp" / "base.yaml", f"model: {MODEL}\nn_prompts: 1\nprompts: {{source: jsonl, path: prompts.jsonl}}\n")
    (tmp_path / "studies").mkdir()
    path = _study(tmp_path / "studies", "name: b\nbase: ../exp/base.yaml\nsweep: {seed: [1, 2]}\n")
    expansion = expand_study(load_study(path), str(path))
    assert [p.config.seed for p in expansion.points] == [1, 2]
    # the base file's own relative paths are relative to the base file, not to the study
    assert {p.config.prompts.path for p in expansion.points} == {str((tmp_path / "exp" / "prompts.jsonl").resolve())}


def test_a_missing_or_unusable_base_file_exits_2_naming_it(tmp_path):
    write_yaml(tmp_path / "inner.yaml", f"base: {{model: {MODEL}}}\n")
    write_yaml(tmp_path / "bad.yaml", f"model: {MODEL}\nn_promts: 2\n")
    cases = (("missing.yaml", "'missing.yaml' cannot be used as the base", "config file not found"),
             ("inner.yaml", "'inner.yaml' is a study file", "base names an experiment file"),
             ("bad.yaml", "n_promts", "unknown field"))
    for named, *words in cases:
        path = _study(tmp_path, f"base: {named}\nsweep: {{seed: [1]}}\n")
        code, text = _lem("run", str(path), "-o", str(tmp_path / "r"))
        assert code == 2 and "s.yaml" in text and all(w in text for w in words), text
        assert "Traceback" not in text and not (tmp_path / "r").exists()


def test_cycles_and_order_flags_override_the_study_file(tmp_path):
    path = _study(tmp_path, GROUPED)
    planned = plan_study(path, RunOptions(output=tmp_path / "r", n_cycles=3, order="sequential", dry_run=True))
    assert (planned.study.n_cycles, planned.study.order) == (3, "sequential")
    assert load_study(path).n_cycles == 1  # the file itself says 1


def test_bad_cycles_and_order_flags_exit_2_naming_the_flag(tmp_path):
    path = _study(tmp_path, GROUPED)
    for flags, word in ((["--cycles", "0"], "--cycles:"), (["--cycles", "1001"], "--cycles:"),
                        (["--order", "random"], "--order:")):
        code, text = _lem("run", str(path), "-o", str(tmp_path / "r"), "--dry-run", *flags)
        assert code == 2 and word in text, text
    experiment = write_yaml(tmp_path / "e.yaml", f"model: {MODEL}\n")
    code, text = _lem("run", str(experiment), "-o", str(tmp_path / "r"), "--cycles", "2")
    assert code == 2 and "--cycles: only for a study file" in text
