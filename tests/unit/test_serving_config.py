"""The serving section: bad values are refused at load, naming the field; files are read before anything runs."""

from __future__ import annotations

import json

import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentConfig
from lem_runner.contract.workload import read_dataset, read_trace
from pydantic import ValidationError

BAD = [
    ("arrival: poisson\n  rate: -1", "serving.rate: Input should be greater than 0"),
    ("arrival: concurrency\n  concurrency: 0", "serving.concurrency: Input should be greater than or equal to 1"),
    ("arrival: concurrency", "needs concurrency"),
    ("arrival: trace\n  trace: missing.jsonl", "serving.trace: cannot read"),
    ("arrival: trace\n  trace: broken.jsonl", "broken.jsonl:2: not JSON"),
    ("rate: 2\n  slo: {ttft_ms: 0.2s}", "serving.slo.ttft_ms: give a number of milliseconds"),
    ("rate: 2\n  slo: {ttft_s: 0.2}", "serving.slo.ttft_s: unknown field"),
    ("rate: 2\n  n_requests: 4\n  duration_s: 3", "n_requests or duration_s, not both"),
    ("rate: 2\n  endpoint: 'ftp://x'", "serving.endpoint: give an http(s) URL"),
    ("rate: 2\n  input_tokens: {dist: normal, mean: 8}", "dist 'normal' needs std"),
    ("arrival: concurrency\n  concurrency: 2\n  rate: 3", "rate is only used with arrival"),
    ("rate: 2\n  dataset: {path: missing.jsonl}", "serving.dataset.path: cannot read"),
    ("rate: 2\nwindow: {mode: windowed, duration_s: 5}", "window.mode: 'windowed' repeats the prompts"),
    ("slo: {ttft_ms: 100}\n  capacity: {rate_min: 8, rate_max: 2}", "rate_min 8 must be below rate_max 2"),
    ("capacity: {rate_min: 1, rate_max: 8}", "capacity needs serving.slo with at least one bound"),
    ("arrival: trace\n  trace: broken.jsonl\n  slo: {ttft_ms: 100}\n  capacity: {rate_min: 1, rate_max: 8}",
     "arrival 'trace' has no rate or clients to vary"),
    ("slo: {ttft_ms: 100}\n  capacity: {rate_min: 1, rate_max: 8, good_share: 1.2}",
     "serving.capacity.good_share: Input should be less than or equal to 1"),
]


_ALSO_RUN = {BAD[0][1], BAD[3][1], BAD[5][1], BAD[12][1], BAD[14][1]}  # `lem run` refuses the same way (a few, each costs a process)


@pytest.mark.parametrize("body,message", BAD, ids=[m for _, m in BAD])
def test_bad_serving_configs_exit_2_naming_the_field(tmp_path, body, message):
    (tmp_path / "broken.jsonl").write_text('{"timestamp": 0, "input_length": 4, "output_length": 2}\n{nope\n')
    cfg = write_yaml(tmp_path / "c.yaml", f"model: /m\nscenario: serving\nserving:\n  {body}\n")
    runs = [["run", str(cfg), "-o", str(tmp_path / "out")]] if message in _ALSO_RUN else []
    for args in [["config", "validate", str(cfg)], *runs]:
        proc = run_lem(*args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_good_serving_config_validates_and_sweeps_over_rate(tmp_path):
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"timestamp": 1000 * i, "input_length": 4 + i,
                                                           "output_length": 2}) + "\n" for i in range(3)))
    (tmp_path / "m").mkdir()  # a model folder (validate refuses one that does not exist, as run does)
    (tmp_path / "m" / "config.json").write_text('{"model_type": "llama", "vocab_size": 512}')
    cfg = write_yaml(tmp_path / "c.yaml", "model: ./m\nscenario: serving\nserving: {arrival: trace, trace: t.jsonl}\n")
    assert run_lem("config", "validate", str(cfg), cwd=tmp_path).returncode == 0
    study = write_yaml(tmp_path / "s.yaml", "name: s\nbase: {model: ./m, scenario: serving}\n"
                                            "sweep: {serving.rate: [1, 2]}\n")
    proc = run_lem("config", "validate", str(study), cwd=tmp_path)
    assert proc.returncode == 0 and "2 point(s)" in proc.stdout, proc.stdout + proc.stderr


def test_serving_section_needs_the_serving_scenario():
    with pytest.raises(ValidationError, match="only used with scenario: serving"):
        ExperimentConfig(serving={"rate": 3})
    assert ExperimentConfig(scenario="serving", serving={"rate": 3}).serving.rate == 3


def test_trace_offsets_units_and_order(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"timestamp": 500, "input_length": 10, "output_length": 3}\n'
                    '{"timestamp": 1500, "input_length": 20, "output_length": 4}\n')
    items = read_trace(path, "ms")
    assert [i.arrival_s for i in items] == [0.0, 1.0] and items[1].input_tokens == 20
    assert read_trace(path, "s")[1].arrival_s == 1000.0
    path.write_text('{"timestamp": 5, "input_length": 1, "output_length": 1}\n'
                    '{"timestamp": 4, "input_length": 1, "output_length": 1}\n')
    with pytest.raises(ValueError, match="t.jsonl:2: timestamps must not decrease"):
        read_trace(path)


def test_sharegpt_dataset_takes_the_first_human_turn(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"conversations": [{"from": "human", "value": "hi there"},
                                                  {"from": "gpt", "value": "one two three"}]}) + "\n"
                    + json.dumps({"conversations": []}) + "\n")
    (item,) = read_dataset(path, "sharegpt")
    assert item.prompt == "hi there" and item.output_tokens == 4


@pytest.mark.parametrize("serving", [{"arrival": "concurrency", "concurrency": 2, "duration_s": 3},
                                     {"arrival": "gamma", "rate": 2, "burstiness": 0.5},
                                     {"rate": 1, "input_tokens": {"dist": "lognormal", "mean": 30, "sigma": 1}}])
def test_a_serving_request_survives_the_trip_through_request_json(serving):
    from lem_runner.contract import RunRequest

    request = RunRequest(experiment_id="x", model_path="/m",
                         config=ExperimentConfig(scenario="serving", serving=serving))
    assert RunRequest.model_validate_json(request.model_dump_json()) == request


def test_open_loop_serving_needs_a_rate():
    with pytest.raises(ValidationError, match="serving.rate: arrival 'poisson' needs rate"):
        ExperimentConfig(scenario="serving")


def test_an_endpoint_cannot_be_reached_from_a_container():
    with pytest.raises(ValidationError, match="serving.endpoint: lem reaches your server over this host's loopback"):
        ExperimentConfig(scenario="serving", runner="docker", serving={"rate": 3, "endpoint": "http://127.0.0.1:1/v1"})
    from llenergymeasure.errors import ConfigError
    from llenergymeasure.launchers.local import LocalLauncher
    from llenergymeasure.launchers.select import select_launcher

    cfg = ExperimentConfig(scenario="serving", backend="vllm", serving={"rate": 3, "endpoint": "http://127.0.0.1:1/v1"})
    assert isinstance(select_launcher(cfg), LocalLauncher)  # vLLM is not installed here: still local, no image
    with pytest.raises(ConfigError, match="an isolated run has no network"):
        select_launcher(cfg, isolated=True)
