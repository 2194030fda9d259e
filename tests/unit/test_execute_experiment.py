"""execute_experiment with a FakeLauncher: what the runner is asked, and how each way a run can end is reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_config, make_result
from fakes import FakeLauncher, FakeResultsRepository
from lem_runner.contract import ProgressEvent, RunError
from llenergymeasure.errors import ConfigError, RunFailed
from llenergymeasure.experiment import execute_experiment


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """All resolve_model checks for a local model: a folder holding config.json."""
    folder = tmp_path / "models" / "tiny"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


@pytest.fixture
def config(model_dir):
    return make_config(model=str(model_dir), name="exp", n_prompts=2, max_output_tokens=4)


def _run(config, tmp_path, launcher, **kwargs):
    return execute_experiment(config, output=tmp_path / "results", launcher=launcher, **kwargs)


def _failure(config, tmp_path, launcher) -> RunFailed:
    with pytest.raises(RunFailed) as info:
        _run(config, tmp_path, launcher)
    assert "\n" not in str(info.value)
    return info.value


def _only_dir(tmp_path) -> Path:
    [exp_dir] = (tmp_path / "results").iterdir()
    return exp_dir


def test_a_result_is_returned_with_its_folder(config, model_dir, tmp_path):
    launcher = FakeLauncher(result=make_result(config=config))
    events: list[ProgressEvent] = []
    result, exp_dir = _run(config, tmp_path, launcher, on_event=events.append)

    assert exp_dir == _only_dir(tmp_path)
    assert exp_dir.name.startswith("exp-")
    assert result.experiment_id == exp_dir.name
    [spec] = launcher.specs
    assert spec.exchange_dir == exp_dir
    assert spec.request.experiment_id == exp_dir.name
    assert spec.request.model_path == str(model_dir.resolve())
    assert spec.request.config == config
    assert spec.model.mount_root == model_dir.resolve()
    assert spec.prompts_file is None
    assert events == launcher.emitted and [e.event for e in events] == ["started", "progress", "done"]
    assert (exp_dir / "config.json").is_file()


def test_a_jsonl_prompts_file_is_handed_to_the_launcher(model_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    config = make_config(model=str(model_dir), prompts={"source": "jsonl", "path": str(prompts)})
    launcher = FakeLauncher(result=make_result(config=config))
    _run(config, tmp_path, launcher)
    assert launcher.specs[0].prompts_file == prompts.resolve()


def test_a_fake_repository_is_used_in_protocol_order(config, tmp_path):
    repo = FakeResultsRepository(tmp_path / "results")
    result = make_result(config=config)
    launcher = FakeLauncher(exit_code=0, before_exit=lambda spec: repo.put_result(spec.exchange_dir, result))
    got, exp_dir = execute_experiment(config, launcher=launcher, repository=repo, output=tmp_path / "unused")
    assert got == result
    assert repo.configs == {exp_dir: config}
    assert [name for name, _ in repo.calls] == ["new_experiment_dir", "save_config", "load_result", "load_error"]
    assert not (tmp_path / "unused").exists()


def test_an_error_json_names_the_phase_and_the_file(config, tmp_path):
    error = RunError(error_type="RuntimeError", message="CUDA out of memory\nTried to allocate 2 GiB", phase="load")
    failure = _failure(config, tmp_path, FakeLauncher(error=error))
    exp_dir = _only_dir(tmp_path)
    message = str(failure)
    assert message.startswith("run failed during load: CUDA out of memory")
    assert str(exp_dir / "error.json") in message
    assert "Tried to allocate" not in message
    assert failure.error_file == str(exp_dir / "error.json")
    assert failure.log_file == str(exp_dir / "runner.log")
    assert failure.exit_code == 1


def test_a_setting_the_engine_refused_is_a_config_error_exit_2(config, tmp_path):
    # the runner's engine check (phase config, exit 2): a bad config the host could not check, not a failed run
    message = "vllm.engine_args.foo: not an argument of vLLM 0.32.0's EngineArgs; did you mean 'foo_bar'?"
    error = RunError(error_type="EngineArgumentError", message=message, phase="config")
    with pytest.raises(ConfigError) as info:
        _run(config, tmp_path, FakeLauncher(error=error, exit_code=2))
    assert info.value.exit_code == 2
    assert str(info.value).startswith(message) and str(_only_dir(tmp_path) / "error.json") in str(info.value)


def test_an_error_json_with_an_empty_message_is_still_a_run_failure(config, tmp_path):
    failure = _failure(config, tmp_path, FakeLauncher(error=RunError(error_type="Killed", message="", phase="measure")))
    assert "run failed during measure" in str(failure)


def test_a_garbage_result_json_is_reported_as_not_valid(config, tmp_path):
    failure = _failure(config, tmp_path, FakeLauncher(garbage=True))
    exp_dir = _only_dir(tmp_path)
    assert str(failure).startswith(f"{exp_dir / 'result.json'}: not a valid ExperimentResult")
    assert failure.log_file == str(exp_dir / "runner.log")


def test_nothing_written_names_the_exit_code(config, tmp_path):
    failure = _failure(config, tmp_path, FakeLauncher())
    message = str(failure)
    assert message.startswith("runner was killed by SIGKILL (exit code -9; out of memory? the OOM killer sends "
                              "SIGKILL) and wrote no result (fake launcher)")
    assert message.endswith(f"log: {_only_dir(tmp_path) / 'runner.log'}")
    assert failure.error_file is None


def test_a_result_with_a_failing_exit_code_is_not_accepted(config, tmp_path):
    failure = _failure(config, tmp_path, FakeLauncher(result=make_result(config=config), exit_code=137))
    assert "code 137" in str(failure)


@pytest.mark.parametrize("written", ["result", "nothing", "error"])
def test_a_timeout_is_reported_even_if_something_was_written(config, tmp_path, written):
    files = {"result": {"result": make_result(config=config)}, "nothing": {},
             "error": {"error": RunError(error_type="Interrupted", message="stopped", phase="measure")}}[written]
    failure = _failure(config, tmp_path, FakeLauncher(timed_out="silence", **files))
    # error.json says why (silent for 900 s) unless the runner's own failure came first; either way a silence stop
    said = str(failure)
    assert said.startswith("runner stopped: ") and "silen" in said and "(fake launcher)" in said, said
    assert failure.log_file == str(_only_dir(tmp_path) / "runner.log")


# --- config errors come before anything is created --------------------------------------------------------------


def test_a_missing_prompts_file_fails_before_any_folder_exists(model_dir, tmp_path):
    missing = tmp_path / "nope.jsonl"
    config = make_config(model=str(model_dir), prompts={"source": "jsonl", "path": str(missing)})
    launcher = FakeLauncher(result=make_result(config=config))
    with pytest.raises(ConfigError, match=f"^prompts.path: file '{missing}' not found$"):
        _run(config, tmp_path, launcher)
    assert not (tmp_path / "results").exists()
    assert launcher.specs == []


def test_a_missing_model_fails_before_the_repository_is_touched(tmp_path):
    repo = FakeResultsRepository(tmp_path / "results")
    launcher = FakeLauncher()
    with pytest.raises(ConfigError, match="^model: folder .* does not exist$"):
        execute_experiment(make_config(model=str(tmp_path / "gone")), launcher=launcher, repository=repo)
    assert (repo.calls, launcher.specs) == ([], [])
    assert not (tmp_path / "results").exists()


def _with_baseline(config, source="fresh", memory_mib=1024.0, power_w=71.5, age_s=0.0):
    from datetime import UTC, datetime, timedelta

    energy = {"source": "nvml_counter", "method": "counter",
              "baseline": {"power_w": power_w, "power_std_w": 0.4, "duration_s": 5.0, "n_samples": 50,
                           "measured_at": (datetime.now(UTC) - timedelta(seconds=age_s)).isoformat(),
                           "device_uuids": ["GPU-1"], "source": source,
                           "conditions": [{"device": "0", "uuid": "GPU-1", "memory_used_mib": memory_mib,
                                           "power_limit_w": 700.0, "persistence_mode": True}]}}
    return make_result(config=config, total_energy_j=64.0, energy_per_token_j=2.0, energy=energy)


def test_a_fresh_baseline_is_kept_and_offered_to_the_next_run(config, tmp_path):
    from llenergymeasure.results.baselines import BaselineCache

    cache = BaselineCache(tmp_path / "baselines.json")
    first = FakeLauncher(result=_with_baseline(config))
    _run(config, tmp_path, first, baselines=cache)
    assert first.specs[0].request.cached_baselines == []
    second = FakeLauncher(result=_with_baseline(config, source="cached"))
    _run(config, tmp_path, second, baselines=cache)
    (offered,) = second.specs[0].request.cached_baselines
    assert (offered.power_w, offered.device_uuids) == (71.5, ["GPU-1"])
    assert offered.conditions[0].memory_used_mib == 1024.0
    # another device list, or mode fresh: nothing offered
    other = config.model_copy(update={"devices": [1]})
    assert cache.get(other) == []
    fresh = config.model_copy(update={"energy": config.energy.model_copy(
        update={"baseline": config.energy.baseline.model_copy(update={"mode": "fresh"})})})
    assert cache.get(fresh) == []


def test_the_baseline_cache_keeps_one_baseline_per_idle_conditions_newest_first(config, tmp_path):
    """Model A (1 GiB resident) and model B (40 GiB) on the same GPU idle differently: both are kept, and a newer
    baseline under A's conditions replaces A's older one."""
    from llenergymeasure.results.baselines import BaselineCache

    cache = BaselineCache(tmp_path / "baselines.json")
    cache.put(config, _with_baseline(config, memory_mib=1024.0, power_w=70.0, age_s=30))
    cache.put(config, _with_baseline(config, memory_mib=40960.0, power_w=90.0, age_s=20))
    cache.put(config, _with_baseline(config, memory_mib=1024.0, power_w=72.0, age_s=10))
    got = cache.get(config)
    assert [(b.power_w, b.conditions[0].memory_used_mib) for b in got] == [(72.0, 1024.0), (90.0, 40960.0)]


def test_a_damaged_baseline_cache_is_ignored(config, tmp_path):
    from llenergymeasure.results.baselines import BaselineCache

    path = tmp_path / "baselines.json"
    path.write_text("{not json")
    cache = BaselineCache(path)
    assert cache.get(config) == []
    cache.put(config, _with_baseline(config))
    assert [b.power_w for b in cache.get(config)] == [71.5]


def test_a_baseline_cache_written_with_one_baseline_per_key_is_still_read(config, tmp_path):
    import json

    from llenergymeasure.results.baselines import BaselineCache

    path = tmp_path / "baselines.json"
    old = json.loads(_with_baseline(config).energy.baseline.model_dump_json())
    path.write_text(json.dumps({f"{config.backend}:{','.join(map(str, config.devices))}": old}))
    assert [b.power_w for b in BaselineCache(path).get(config)] == [71.5]
