"""The public Python API runs the same path as the CLI."""

from __future__ import annotations

import llenergymeasure as lem
import pytest
from lem_runner.contract import ExperimentResult
from llenergymeasure.errors import ConfigError


def test_run_experiment_from_a_mapping(tmp_path, tiny_model_path):
    result = lem.run_experiment(
        {"model": str(tiny_model_path), "n_prompts": 2, "max_output_tokens": 4, "force_output_length": True},
        output=tmp_path,
    )
    assert isinstance(result, ExperimentResult)
    assert result.output_tokens == 8
    assert (tmp_path / result.experiment_id / "result.json").is_file()


def test_run_experiment_rejects_a_bad_mapping_before_running(tmp_path):
    with pytest.raises(ConfigError, match="n_prompts"):
        lem.run_experiment({"model": "x/y", "n_prompts": 0}, output=tmp_path)
    assert not any(tmp_path.iterdir())
