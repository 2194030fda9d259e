"""Relative differences and study columns for `lem results compare`, from hand-written folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_result
from llenergymeasure.errors import ConfigError
from llenergymeasure.results.compare import collect, differences, entries_for, relative
from llenergymeasure.results.compare_view import format_relative, format_value, render_comparison
from rich.console import Console


def _write(folder: Path, **overrides) -> Path:
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(make_result(**overrides).model_dump_json())
    return folder


def test_relative_is_null_when_it_cannot_be_computed():
    assert relative(10.0, 12.5) == pytest.approx(0.25)
    assert relative(10.0, 5.0) == pytest.approx(-0.5)
    assert relative(None, 1.0) is None and relative(1.0, None) is None and relative(0.0, 1.0) is None
    assert format_relative(0.25) == "+25.0 %" and format_relative(-0.5) == "-50.0 %" and format_relative(None) == ""


def test_experiments_compare_against_the_first(tmp_path):
    a = _write(tmp_path / "a", experiment_id="a", output_tokens_per_second=16.0)
    b = _write(tmp_path / "b", experiment_id="b", output_tokens_per_second=20.0, total_energy_j=40.0,
               avg_energy_per_token_j=1.25)
    entries = collect([a, b / "result.json"])
    diffs = differences(entries)
    assert [e.title for e in entries] == ["a", "b"]
    assert diffs["tokens_per_second"] == [pytest.approx(0.0), pytest.approx(0.25)]
    assert diffs["energy_per_token_j"] == [None, None]  # the first has no energy: no difference, never 0
    assert entries[0].settings["batch"] == "1" and entries[0].settings["device"] == "auto"
    console = Console(width=200, record=True)
    render_comparison(console, entries)
    text = console.export_text()
    assert "16 " in text and "20 [+25.0 %]" in text


def test_study_folder_gives_mean_and_ci_per_point(tmp_path):
    study = tmp_path / "st"
    study.mkdir()
    stats = {"mean": 10.0, "std": 1.0, "ci95": 8.985, "cv": 0.1, "n": 2}
    (study / "study_summary.json").write_text(json.dumps({"study": "st", "aggregates": [
        {"label": "bs=1", "backend": "pytorch", "n_ok": 2, "tokens_per_second": stats,
         "energy_j": {"mean": None, "std": None, "ci95": None, "cv": None, "n": 0}},
        {"label": "bs=4", "backend": "pytorch", "n_ok": 2, "tokens_per_second": {**stats, "mean": 15.0}},
    ]}))
    entries = entries_for(study)
    assert [e.title for e in entries] == ["st: bs=1", "st: bs=4"]
    assert format_value(entries[0].values["tokens_per_second"]) == "10 ± 8.98 (n=2)"
    assert format_value(entries[0].values["energy_j"]) == "null"
    assert differences(entries)["tokens_per_second"][1] == pytest.approx(0.5)


def test_folders_that_are_neither_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="neither an experiment folder"):
        entries_for(tmp_path / "empty")
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "study_summary.json").write_text("{")
    with pytest.raises(ConfigError, match="not a readable study summary"):
        entries_for(tmp_path / "st")
    a = _write(tmp_path / "a")
    with pytest.raises(ConfigError, match="at least two"):
        collect([a])
