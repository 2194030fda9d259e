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
    assert result.result_dir == tmp_path / result.experiment_id  # the folder, without guessing it from the id
    saved = ExperimentResult.model_validate_json((result.result_dir / "result.json").read_text())
    assert saved.model_dump() == result.model_dump() and isinstance(result, ExperimentResult)


def test_run_study_reports_progress_after_each_run(tmp_path, tiny_model_path):
    seen = []
    study = lem.run_study({"name": "p", "base": {"model": str(tiny_model_path), "n_prompts": 2, "max_output_tokens": 2,
                                                 "warmup": {"n_batches": 0}},
                           "sweep": {"seed": [1, 2]}}, output=tmp_path, progress=seen.append)
    assert [(p.done, p.total) for p in seen] == [(1, 2), (2, 2)]
    assert [p.entry.status for p in seen] == ["done", "done"] and study.status == "complete"
    assert str(seen[-1]).startswith("2/2 seed=2 (cycle 1): done")


def test_dir_shows_the_public_api_only():
    names = dir(lem)
    assert {"run_experiment", "run_study", "load_results", "StudyResult", "StudyProgress"} <= set(names)
    assert not {"Any", "Path", "dataclass", "field", "TYPE_CHECKING"} & set(names)


def test_run_experiment_rejects_a_bad_mapping_before_running(tmp_path):
    with pytest.raises(ConfigError, match="n_prompts"):
        lem.run_experiment({"model": "x/y", "n_prompts": 0}, output=tmp_path)
    assert not any(tmp_path.iterdir())
