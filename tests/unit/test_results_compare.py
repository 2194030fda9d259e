"""Relative differences and study columns for `lem results compare`, from hand-written folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_result
from lem_runner.contract.config import CarbonConfig
from llenergymeasure.errors import ConfigError
from llenergymeasure.render.compare import format_relative, format_value, render_comparison
from llenergymeasure.results.compare import Value, collect, differences, entries_for, relative, significant
from rich.console import Console


def _write(folder: Path, **overrides) -> Path:
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(make_result(**overrides).model_dump_json())
    return folder


def test_relative_is_null_when_it_cannot_be_computed():
    assert relative(10.0, 12.5) == pytest.approx(0.25)
    assert relative(10.0, 5.0) == pytest.approx(-0.5)
    assert relative(None, 1.0) is None and relative(1.0, None) is None and relative(0.0, 1.0) is None
    assert format_relative(0.25) == "+25 %" and format_relative(-0.5) == "-50 %" and format_relative(None) == ""
    assert format_relative(0.085) == "+8.5 %"


def test_experiments_compare_against_the_first(tmp_path):
    a = _write(tmp_path / "a", experiment_id="a", output_tokens_per_second=16.0)
    b = _write(tmp_path / "b", experiment_id="b", output_tokens_per_second=20.0, total_energy_j=40.0,
               energy_per_token_j=1.25)
    entries = collect([a, b / "result.json"])
    diffs = differences(entries)
    assert [e.title for e in entries] == ["a", "b"]
    assert diffs["output_tokens_per_second"] == [pytest.approx(0.0), pytest.approx(0.25)]
    assert diffs["energy_per_token_j"] == [None, None]  # the first has no energy: no difference, never 0
    assert entries[0].settings["batch"] == "1" and entries[0].settings["device"] == "auto"
    console = Console(width=200, record=True)
    render_comparison(console, entries)
    text = console.export_text()
    assert "16.0" in text and "20.0" in text and "+25 %" in text
    assert "n.s." not in text and "single runs (no spread, differences not tested)" in text


def test_study_folder_gives_mean_and_ci_per_point(tmp_path):
    study = tmp_path / "st"
    study.mkdir()
    stats = {"mean": 10.0, "std": 1.0, "ci95": 8.985, "cv": 0.1, "n": 2}
    (study / "study_summary.json").write_text(json.dumps({"study": "st", "aggregates": [
        {"label": "bs=1", "backend": "pytorch", "n_ok": 2, "output_tokens_per_second": stats,
         "energy_j": {"mean": None, "std": None, "ci95": None, "cv": None, "n": 0}},
        {"label": "bs=4", "backend": "pytorch", "n_ok": 2, "output_tokens_per_second": {**stats, "mean": 15.0}},
    ]}))
    entries = entries_for(study)
    assert [e.title for e in entries] == ["st: bs=1", "st: bs=4"]
    assert format_value(entries[0].values["output_tokens_per_second"]) == "10.0 ± 9.0"
    assert entries[0].params == {"study": "st", "bs": "1"}
    assert format_value(entries[0].values["energy_j"]) == "null"
    assert differences(entries)["output_tokens_per_second"][1] == pytest.approx(0.5)


def test_a_study_summary_written_by_lem_0_1_compares_under_todays_names(tmp_path):
    """lem 0.1 named two study figures differently (tokens_per_second, total_inference_time_sec): its summaries
    still compare, under the catalogue's names, with the same numbers."""
    study = tmp_path / "old"
    study.mkdir()
    old = lambda mean: {"mean": mean, "std": 1.0, "ci95": 9.0, "cv": 0.1, "n": 2}  # noqa: E731
    (study / "study_summary.json").write_text(json.dumps({"study": "old", "aggregates": [
        {"label": "bs=1", "backend": "pytorch", "n_ok": 2, "tokens_per_second": old(10.0),
         "total_inference_time_sec": old(2.0)},
        {"label": "bs=4", "backend": "pytorch", "n_ok": 2, "tokens_per_second": old(30.0),
         "total_inference_time_sec": old(1.0)}]}))
    entries = entries_for(study)
    assert entries[1].values["output_tokens_per_second"].mean == 30.0
    assert entries[0].values["inference_time_s"].mean == 2.0
    assert differences(entries)["output_tokens_per_second"][1] == pytest.approx(2.0)
    assert "tokens_per_second" not in entries[0].values


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


def test_values_carry_the_ci_two_significant_digits():
    # the examples: 24.4 ± 13.3 and 189.3 ± 0.487 had different precision
    assert format_value(Value(24.4, 13.3, 3)) == "24 ± 13"
    assert format_value(Value(189.3, 0.487, 3)) == "189.30 ± 0.49"
    assert format_value(Value(668.2, 1890.0, 3)) == "700 ± 1900"
    assert format_value(Value(0.012346, 0.00045, 3)) == "0.01235 ± 0.00045"
    assert format_value(Value(3.0, 0.0996, 3)) == "3.00 ± 0.10"  # the CI rounds up to 0.10: two digits, not three
    assert format_value(Value(7.197)) == "7.20"  # no CI: three significant digits
    assert format_value(Value(0.0)) == "0" and format_value(Value(None)) == "null"


def test_welch_marks_only_differences_the_cycles_do_not_show():
    # hand computation: std 1, n 3 each -> se = sqrt(2/3) = 0.816, df = 4, t95 = 2.776
    a = Value(10.0, None, 3, 1.0)
    assert significant(a, Value(10.5, None, 3, 1.0)) is False   # t = 0.61
    assert significant(a, Value(13.0, None, 3, 1.0)) is True    # t = 3.67
    assert significant(a, Value(12.2, None, 3, 1.0)) is False   # t = 2.69 < 2.776
    assert significant(a, Value(12.3, None, 3, 1.0)) is True    # t = 2.82
    assert significant(a, Value(13.0)) is None                   # a single run: no spread, no test


def _study(folder: Path, labels: list[str], tps: list[float], std: float = 1.0, energy: float | None = None) -> Path:
    folder.mkdir(parents=True)
    aggs = []
    for label, t in zip(labels, tps):
        agg = {"label": label, "backend": "pytorch", "n_ok": 3,
               "output_tokens_per_second": {"mean": t, "std": std, "ci95": 4.303 * std / 3 ** 0.5, "cv": std / t, "n": 3}}
        if energy is not None:
            agg["energy_j"] = {"mean": energy, "std": 0.1 * energy, "ci95": 0.2 * energy, "cv": 0.1, "n": 3}
        aggs.append(agg)
    (folder / "study_summary.json").write_text(json.dumps({"study": folder.name, "aggregates": aggs}))
    return folder


@pytest.mark.parametrize("width", [80, 120])
def test_headers_never_break_mid_word_and_lines_fit(tmp_path, width):
    labels = [f"pytorch.batch_size={b}, dtype={d}, max_input_tokens={m}"
              for b in (1, 16) for d in ("float32", "bfloat16") for m in (128, 2048)]
    study = _study(tmp_path / f"st{width}", labels, [10.0 + i for i in range(len(labels))])
    console = Console(width=width, record=True)
    render_comparison(console, collect([study]))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    words = set(text.split())
    for short in ("bs=1", "bs=16", "fp32", "bf16", "in=128", "in=2048"):  # each label part printed whole
        assert short in words, (short, text)
    assert "#8" in words and "pytorch.batch_size=16, dtype=bfloat16, max_input_tokens=2048" in text
    assert "n.s." in text  # +1 tok/s with std 1 over 3 cycles is inside the spread
    assert "every column: backend pytorch · cycles ok 3" in text


def test_study_emissions_scale_the_energy_and_name_the_inputs(tmp_path):
    study = _study(tmp_path / "st", ["bs=1", "bs=2"], [10.0, 20.0], energy=3.6e6)
    entries = collect([study], CarbonConfig(grid_intensity_g_per_kwh=400, pue=1.2))
    em = entries[0].values["emissions_g"]
    assert em.mean == pytest.approx(480.0) and em.ci95 == pytest.approx(96.0)  # 1 kWh x 1.2 x 400; CI scales too
    assert entries[0].settings["carbon"] == "400 g/kWh × PUE 1.2"
    assert "emissions_g" not in collect([study])[0].values  # no carbon settings anywhere: no emissions row
