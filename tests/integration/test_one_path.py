"""`lem run` and the Python API take one path (llenergymeasure.plan): given the same input they refuse the same way,
before any result folder exists. Before they shared it, only the CLI checked a study's containers and only the API
validated a StudyConfig object again, so each half of these tests failed on one side."""

from __future__ import annotations

import contextlib
import io

import llenergymeasure as lem
import pytest
from conftest import write_yaml
from llenergymeasure.cli.app import main
from llenergymeasure.errors import ConfigError, SetupError
from llenergymeasure.study import StudyConfig

ABSENT = "docker:lem-test/absent-image:0"  # no such image anywhere (and no engine at all reads the same: exit 3)


def _lem(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(args))
    return code, err.getvalue()


def _first_words(message: str) -> str:
    return " ".join(message.split()[:6])


@pytest.mark.parametrize("kind", ["experiment", "study"])
def test_the_cli_and_the_api_both_refuse_a_missing_image_before_any_folder(tmp_path, tiny_model_path, kind):
    settings = f"model: {tiny_model_path}\nn_prompts: 1\nmax_output_tokens: 2\nrunner: '{ABSENT}'\n"
    if kind == "experiment":
        path = write_yaml(tmp_path / "e.yaml", settings)
    else:
        path = write_yaml(tmp_path / "s.yaml", "name: img\nbase:\n" + "".join(f"  {line}\n" for line in
                                                                             settings.splitlines())
                          + "sweep: {seed: [1, 2]}\n")
    code, text = _lem("run", str(path), "-o", str(tmp_path / "cli"))
    run = lem.run_experiment if kind == "experiment" else lem.run_study
    with pytest.raises(SetupError) as api:
        run(path, output=tmp_path / "api")
    assert code == 3 and _first_words(str(api.value)) in text, (text, str(api.value))
    assert not (tmp_path / "cli").exists() and not (tmp_path / "api").exists()


def test_the_api_validates_a_study_config_object_as_the_cli_validates_a_file(tmp_path, tiny_model_path):
    fields = {"name": "cyc", "base": {"model": str(tiny_model_path)}, "sweep": {"seed": [1]}, "n_cycles": 0}
    path = write_yaml(tmp_path / "s.yaml", "name: cyc\nn_cycles: 0\nbase: {model: x}\nsweep: {seed: [1]}\n")
    code, text = _lem("run", str(path), "-o", str(tmp_path / "cli"))
    assert code == 2 and "n_cycles" in text
    with pytest.raises(ConfigError, match="n_cycles"):  # an object built without validation is validated anyway
        lem.run_study(StudyConfig.model_construct(**fields), output=tmp_path / "api")
    assert not (tmp_path / "cli").exists() and not (tmp_path / "api").exists()


def test_run_options_reach_the_api_as_they_reach_the_cli(tmp_path, tiny_model_path):
    """A flag and the same option through the API are refused alike (a study-only flag on one experiment)."""
    path = write_yaml(tmp_path / "e.yaml", f"model: {tiny_model_path}\n")
    code, text = _lem("run", str(path), "-o", str(tmp_path / "cli"), "--fail-fast")
    with pytest.raises(ConfigError) as api:
        lem.run_experiment(path, options=lem.RunOptions(output=tmp_path / "api", fail_fast=True))
    assert code == 2 and "--fail-fast: only for a study file" in text and "--fail-fast" in str(api.value)
