"""The flat row: stable names, null never 0, failed runs keep their identity, study runs their point and cycle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_config, make_result
from llenergymeasure.errors import ConfigError
from llenergymeasure.render.listing import list_lines
from llenergymeasure.results.columns import COLUMN_NAMES, flatten
from llenergymeasure.results.discover import Experiment, find_experiments
from llenergymeasure.results.export import export_results
from llenergymeasure.results.frame import results_frame


def _write(folder: Path, result) -> Path:
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(result.model_dump_json())
    return folder


def test_flatten_reads_the_result_and_keeps_null_energy_null(tmp_path):
    r = make_result(config=make_config(pytorch={"batch_size": 4}))
    row = flatten(Experiment(tmp_path, r, config=r.config))
    assert list(row) == COLUMN_NAMES
    assert row["output_tokens_per_second"] == 16.0 and row["ttft_p50_ms"] == 50.0 and row["itl_p99_ms"] == 62.5
    assert row["energy_j"] is None and row["energy_per_token_j"] is None and row["baseline_power_w"] is None
    assert row["energy_unavailable_reason"] == "run is on CPU: NVML covers GPUs only"
    assert row["batch_size"] == 4 and row["dtype"] == "auto" and row["status"] == "done" and row["error"] is None


def test_backend_details_win_over_the_config(tmp_path):
    r = make_result(backend_details={"dtype": "bfloat16", "device": "cuda", "batch_size": 8})
    row = flatten(Experiment(tmp_path, r, config=r.config))
    assert (row["dtype"], row["device"], row["batch_size"]) == ("bfloat16", "cuda", 8)


def test_study_runs_failed_runs_and_corrupt_files_are_all_found(tmp_path):
    root = tmp_path / "results"
    study = root / "st-1"
    _write(study / "st-001-c1-x", make_result(experiment_id="st-001-c1-x"))
    (study / "manifest.json").write_text(json.dumps({"study": "st", "entries": [
        {"label": "pytorch.batch_size=1", "cycle": 1, "result_path": "st-001-c1-x"}]}))
    failed = root / "f"
    failed.mkdir()
    (failed / "error.json").write_text(json.dumps({"error_type": "OSError", "message": "gone", "phase": "load"}))
    (failed / "config.json").write_text(make_config(name="f").model_dump_json())
    corrupt = root / "c"
    corrupt.mkdir()
    (corrupt / "result.json").write_text("{}")
    (root / ".hidden" / "x").mkdir(parents=True)
    ((root / ".hidden" / "x") / "error.json").write_text("{}")

    found = {e.path.name: e for e in find_experiments(root)}
    assert set(found) == {"st-001-c1-x", "f", "c"}
    assert (found["st-001-c1-x"].study, found["st-001-c1-x"].label, found["st-001-c1-x"].cycle) == \
        ("st", "pytorch.batch_size=1", 1)
    assert found["f"].failure == "load: OSError: gone" and found["f"].config.name == "f"
    assert "not a valid ExperimentResult" in found["c"].failure

    experiments = find_experiments(root)  # path order: c, f, st-1/…
    frame = results_frame(experiments)
    assert list(frame["status"]) == ["failed", "failed", "done"]
    assert frame.loc[1, "experiment_name"] == "f" and frame.loc[1, "model"] == "tests/tiny-llama"
    assert frame["output_tokens_per_second"].isna().tolist() == [True, True, False]
    lines = list_lines(experiments)
    runs = [line for line in lines if not line.startswith(" ")]  # the corrupt file's long reason continues below
    assert len(runs) == 4 and "failed: load: OSError: gone" in runs[2] and max(map(len, lines)) <= 160


def test_export_refuses_bad_format_missing_dir_and_folder_target(tmp_path):
    root = tmp_path / "r"
    _write(root / "a", make_result())
    with pytest.raises(ConfigError, match="--format"):
        export_results(root, "xlsx")
    with pytest.raises(ConfigError, match="no such directory"):
        export_results(tmp_path / "missing", "csv")
    with pytest.raises(ConfigError, match="is a directory"):
        export_results(root, "csv", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no experiments found"):
        export_results(tmp_path / "empty", "csv")


def test_export_writes_the_timeseries_beside_the_table(tmp_path):
    import pandas as pd
    from lem_runner.energy.device import DeviceSample
    from lem_runner.energy.sampler import SampleRow
    from lem_runner.energy.timeseries import write_timeseries

    root = tmp_path / "r"
    folder = _write(root / "a", make_result(experiment_id="a", energy={
        "source": "nvml_counter", "method": "counter", "timeseries_file": "timeseries.parquet"}))
    write_timeseries([SampleRow(0.1 * i, "0", None, DeviceSample(power_w=100.0 + i)) for i in range(5)],
                     folder / "timeseries.parquet", 0.0)
    written = export_results(root, "csv", tmp_path / "out.csv")
    assert [p.name for p in written] == ["out.csv", "out_timeseries.csv"]
    series = pd.read_csv(tmp_path / "out_timeseries.csv")
    assert list(series.columns[:4]) == ["experiment_id", "t_s", "device", "energy_counter_mj"]
    assert len(series) == 5 and set(series["experiment_id"]) == {"a"} and series["power_w"].iloc[-1] == 104.0


def test_list_is_newest_first_filters_and_keeps_lines_within_160(tmp_path):
    from datetime import UTC, datetime, timedelta

    from llenergymeasure.results.listing import parse_since, select

    root = tmp_path / "r"
    t0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    for name, hours, backend in (("b-old", 0, "pytorch"), ("a-new", 5, "vllm"), ("c-mid", 2, "pytorch")):
        start = t0 + timedelta(hours=hours)
        _write(root / name, make_result(experiment_id=name, config=make_config(backend=backend, model=f"org/{name}"),
                                        start_time=start, end_time=start + timedelta(seconds=4)))
    failed = root / ("z" * 90)
    failed.mkdir()
    (failed / "error.json").write_text(json.dumps({"error_type": "OSError", "message": "x" * 300, "phase": "load"}))
    found = find_experiments(root)
    # newest first (the failed run's time is its error.json's, written just now)
    assert [e.path.name for e in select(found)] == ["z" * 90, "a-new", "c-mid", "b-old"]
    assert [e.path.name for e in select(found, "name")][:3] == ["a-new", "b-old", "c-mid"]
    assert [e.path.name for e in select(found, backend="vllm")] == ["a-new"]
    assert [e.path.name for e in select(found, model="MID")] == ["c-mid"]
    assert [e.path.name for e in select(found, since=t0 + timedelta(hours=1))] == ["z" * 90, "a-new", "c-mid"]
    lines = list_lines(select(found))
    # the reason is never cut: it continues on indented lines (a 300-character word split only because no line
    # could hold it), and the run's name is whole
    assert max(len(line) for line in lines) <= 160 and "z" * 90 in lines[1] and lines[1].endswith("failed:")
    assert "".join(line.strip() for line in lines[2:] if line.startswith(" ")) == "load: OSError: " + "x" * 300
    assert parse_since("2h", t0) == t0 - timedelta(hours=2) and parse_since("2025-01-01") == datetime(2025, 1, 1,
                                                                                                      tzinfo=UTC)
    with pytest.raises(ConfigError, match="--since"):
        parse_since("yesterday")
    with pytest.raises(ConfigError, match="--sort"):
        select(found, "colour")


def test_export_has_a_column_per_swept_parameter_beside_the_point(tmp_path):
    study = tmp_path / "r" / "st-1"
    entries = []
    for i, (b, d) in enumerate(((1, "float32"), (2, "bfloat16"))):
        name = f"st-00{i + 1}-c1-x"
        _write(study / name, make_result(experiment_id=name))
        entries.append({"label": f"pytorch.batch_size={b}, dtype={d}", "cycle": 1, "result_path": name})
    (study / "manifest.json").write_text(json.dumps({"study": "st", "entries": entries}))
    frame = results_frame(find_experiments(tmp_path / "r"))
    cols = list(frame.columns)
    at = cols.index("study_point")
    assert cols[at + 1:at + 3] == ["sweep.pytorch.batch_size", "sweep.dtype"]
    assert list(frame["sweep.pytorch.batch_size"]) == ["1", "2"] and list(frame["sweep.dtype"]) == ["float32",
                                                                                                     "bfloat16"]


def test_a_result_written_with_every_backends_section_still_reads_with_its_batch(tmp_path):
    """Before sections became per-backend, every result.json held all three (defaults for the unused ones) and no
    batch_size: it still reads, and the column takes the batch the backend reported in backend_details."""
    import json

    from lem_runner.contract import ExperimentResult
    from llenergymeasure.results.columns import batch_knob, batch_size
    from llenergymeasure.results.discover import experiment_from_arg

    data = json.loads(make_result(config=make_config(pytorch={"batch_size": 2})).model_dump_json())
    data["config"]["vllm"] = {"max_model_len": None, "gpu_memory_utilization": 0.9, "max_num_seqs": None}
    data["config"]["tensorrt"] = {"llm_backend": "pytorch", "max_batch_size": None}
    data.pop("batch_size"), data.pop("batch_knob")
    data["backend_details"]["batch_size"] = 2
    run = tmp_path / "old-run"
    run.mkdir()
    (run / "result.json").write_text(json.dumps(data))
    result = ExperimentResult.model_validate(data)
    assert result.config.vllm is None and result.config.tensorrt is None and result.batch_size is None
    e = experiment_from_arg(run)
    assert (batch_size(e), batch_knob(e)) == (2, "pytorch.batch_size")
def test_every_figure_of_the_catalogue_is_one_column_under_its_own_name():
    """One name per figure: the catalogue (results/metrics.py) is what the export, the study aggregates and compare
    read; each of its figures is exactly one column, described the same, and every study metric is one of them."""
    from llenergymeasure.results.columns import COLUMNS
    from llenergymeasure.results.metrics import METRICS, STUDY_METRICS

    by_name = {c.name: c for c in COLUMNS}
    assert len(by_name) == len(COLUMNS)
    assert set(METRICS) <= set(by_name)
    assert all(by_name[k].description == m.description and by_name[k].kind == m.kind for k, m in METRICS.items())
    assert set(STUDY_METRICS) <= set(METRICS)
    assert all(m.better in ("higher", "lower", None) for m in METRICS.values())


def test_each_flops_name_covers_one_span_in_result_json_and_the_export(tmp_path):
    # steady-state headline over 4 requests of 10 prompt tokens and 5 output tokens (the fake: 1e6 parameters, 50k
    # input embedding, 50k untied head, no model shape). By hand: N_body 900k, N_head 50k; a request's prefill
    # 2 x 900k x 10 + 2 x 50k = 18.1e6, each later token 2 x 950k = 1.9e6, so the whole run is
    # 4 x (18.1e6 + 4 x 1.9e6) = 102.8e6 over 20 output tokens (5.14e6 a token). The steady spans hold tokens 2..5 of
    # each request, 16 tokens at 1.9e6 each: 30.4e6, 1.9e6 a token. The export once called the headline's
    # 1.9e6 "flops_per_output_token", the name result.json gives the whole run's 5.14e6.
    from conftest import make_environment
    from fakes import FakeEnergySource, FakeInferenceBackend
    from lem_runner.contract import RunRequest
    from lem_runner.measure import run_measurement

    backend = FakeInferenceBackend(batch_size=2, output_tokens=5, step_s=0.25, ttft_s=0.5)
    request = RunRequest(experiment_id="exp-1", config=make_config(n_prompts=4, window={"mode": "steady_state"}),
                         model_path="/m")
    result = run_measurement(request, backend, lambda _l: FakeEnergySource(), lambda _l: make_environment(),
                             lambda _e: None, clock=backend.clock)
    assert result.flops.total == pytest.approx(102.8e6) and result.flops.per_output_token == pytest.approx(5.14e6)
    row = flatten(Experiment(tmp_path, result, config=result.config))
    assert row["run_flops"] == pytest.approx(102.8e6)
    assert row["run_flops_per_output_token"] == pytest.approx(5.14e6)
    assert row["run_achieved_flops_per_s"] == pytest.approx(102.8e6 / result.whole_run.duration_s)
    assert row["headline_flops"] == pytest.approx(30.4e6)
    assert row["headline_flops_per_output_token"] == pytest.approx(1.9e6)
    assert row["headline_achieved_flops_per_s"] == pytest.approx(30.4e6 / result.inference_time_s)
    # no export column shares a name with a result.json flops field of another span
    assert not {"total_flops", "flops_per_output_token", "achieved_flops_per_s"} & set(COLUMN_NAMES)


def test_multi_turn_columns_read_the_conversation_figures_and_stay_null_without_them(tmp_path):
    serving = {"arrival": "poisson", "n_requests": 8, "n_ok": 8, "n_errors": 0, "n_timeouts": 0, "duration_s": 2.0,
               "completed_rate_rps": 4.0,
               "output_tokens_per_s": 10.0, "inflight_mean": 1.0, "inflight_median": 1.0, "inflight_max": 1,
               "idle_time_s": 0.5}
    conv = {"n_conversations": 4, "n_complete": 3, "turns_sent": 8, "prompt_format": "plain",
            "think_lag_p50_ms": 0.2, "think_lag_p99_ms": 3.5, "duration_mean_s": 1.25,
            "energy_per_conversation_mean_j": 20.0}
    r = make_result(serving={**serving, "conversations": conv})
    row = flatten(Experiment(tmp_path, r, config=r.config))
    assert (row["conversations_complete"], row["conversation_duration_mean_s"], row["energy_per_conversation_mean_j"],
            row["think_lag_p99_ms"]) == (3, 1.25, 20.0, 3.5)
    row = flatten(Experiment(tmp_path, make_result(serving=serving), config=r.config))
    assert row["conversations_complete"] is None and row["energy_per_conversation_mean_j"] is None
