"""Run options are declared once (llenergymeasure.options.RunOptions): `lem run`'s flags, their help and defaults,
the Python API's keywords and what a study runs with all come from that declaration."""

from __future__ import annotations

import inspect
from dataclasses import fields

import llenergymeasure as lem
import pytest
from llenergymeasure.cli import run_cmd
from llenergymeasure.errors import ConfigError
from llenergymeasure.options import STUDY_ONLY, RunOptions, option_meta
from llenergymeasure.study import execute_study


def _cli_options() -> dict[str, object]:
    """`lem run`'s flag -> its typer option (help, default), as the command declares them."""
    out = {}
    for param in inspect.signature(run_cmd.run).parameters.values():
        info = param.default
        for decl in getattr(info, "param_decls", ()) or ():
            if decl.startswith("--"):
                out[decl] = info
    return out


def test_every_run_option_flag_is_a_lem_run_flag_with_the_declared_help():
    cli = _cli_options()
    for f in fields(RunOptions):
        meta = option_meta(f.name)
        declared = ([(meta["flag"], meta["help"])] if meta["flag"] else []) + list(meta["flags"].values())
        for flag, help_text in declared:
            assert flag in cli, f"{f.name}: {flag} is not a flag of lem run"
            assert cli[flag].help == help_text, flag


def test_the_cli_defaults_are_the_declared_defaults():
    cli = _cli_options()
    defaults = RunOptions()
    assert cli["--output"].default == defaults.output and cli["--silence-timeout"].default == defaults.timeouts.silence_s
    assert cli["--timeout"].default == defaults.timeouts.wall_s and cli["--cycles"].default is None


def test_study_only_options_come_from_the_declaration():
    assert STUDY_ONLY == {"resume": "--resume", "fail_fast": "--fail-fast", "no_gaps": "--no-gaps",
                          "retry_failed": "--retry-failed", "detach": "--detach", "allow_skipped": "--allow-skipped",
                          "n_cycles": "--cycles", "order": "--order"}


def test_the_api_takes_every_run_option_by_name_and_refuses_others(tmp_path):
    assert RunOptions.from_keywords(output=str(tmp_path), fail_fast=True, n_cycles=2) == RunOptions(
        output=tmp_path, fail_fast=True, n_cycles=2)
    with pytest.raises(ConfigError, match="^fail_fst: not a run option"):
        lem.run_study({"name": "x", "base": {}}, output=tmp_path, fail_fst=True)
    with pytest.raises(ConfigError, match="^isolate: not a run option"):
        lem.run_experiment({"model": "x/y"}, output=tmp_path, isolate=True)


def test_a_study_runs_on_the_run_options_themselves():
    assert inspect.signature(execute_study).parameters["options"].default == RunOptions()


def test_launchers_say_what_callers_need_on_the_protocol():
    """No caller tells launchers apart by name or probes them with hasattr: the protocol carries it."""
    import ast
    from pathlib import Path

    from llenergymeasure.launchers import Launcher
    from llenergymeasure.launchers.docker import DockerLauncher
    from llenergymeasure.launchers.local import LocalLauncher
    from llenergymeasure.launchers.slurm import SlurmLauncher

    local, docker, slurm = LocalLauncher(), DockerLauncher(image="x"), SlurmLauncher()
    assert all(isinstance(x, Launcher) for x in (local, docker, slurm))
    assert (local.concurrent, local.sessions, local.check_key(None)) == (False, True, None)
    assert docker.sessions and not docker.concurrent and slurm.concurrent and not slurm.sessions
    root = Path(__file__).resolve().parents[2] / "controller" / "llenergymeasure"
    probes = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "hasattr" and node.args \
                    and "launcher" in ast.unparse(node.args[0]):
                probes.append(f"{path.name}: {ast.unparse(node)}")
            if isinstance(node, ast.Compare) and "launcher.name" in ast.unparse(node.left):
                probes.append(f"{path.name}: {ast.unparse(node)}")
    assert probes == []
