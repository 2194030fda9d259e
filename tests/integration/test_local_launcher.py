"""The real LocalLauncher (FakeLauncher's twin): a real runner subprocess on the tiny model, over the exchange dir."""

from __future__ import annotations

from conftest import make_config
from lem_runner.contract import ExperimentResult, RunError, RunRequest
from llenergymeasure.launchers import LaunchSpec, Timeouts
from llenergymeasure.launchers.local import LocalLauncher
from llenergymeasure.models import ResolvedModel


def _spec(tmp_path, experiment_id: str, model) -> LaunchSpec:
    """A launch of a 2-prompt experiment on ``model`` into a fresh exchange folder."""
    exchange = tmp_path / experiment_id
    exchange.mkdir()
    config = make_config(model=str(model), n_prompts=2, max_output_tokens=4, device="cpu")
    return LaunchSpec(
        exchange_dir=exchange,
        request=RunRequest(experiment_id=experiment_id, config=config, model_path=str(model)),
        model=ResolvedModel(str(model), mount_root=model),
        timeouts=Timeouts(wall_s=300, silence_s=240),
    )


def test_local_launcher_runs_the_runner_and_leaves_result_json(tmp_path, tiny_model_path):
    spec = _spec(tmp_path, "exp-1", tiny_model_path)
    exchange = spec.exchange_dir
    events = []
    outcome = LocalLauncher().launch(spec, events.append)

    log = (exchange / "runner.log").read_text()
    assert (outcome.exit_code, outcome.timed_out) == (0, None), log
    assert outcome.log_file == exchange / "runner.log"
    kinds = [e.event for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done", kinds
    assert "error" not in kinds
    assert events[0].message == "exp-1"

    result = ExperimentResult.model_validate_json((exchange / "result.json").read_bytes())
    assert result.experiment_id == "exp-1"
    assert result.whole_run.n_requests == 2
    # the engine computes in the runner's process: its CPU over the window is there, and no thread count can make it
    # exceed the window's wall time times the threads torch ran (plus the sampler's and lem's own thread)
    cpu, threads = result.whole_run.process_cpu_s, result.backend_details["torch_threads"]
    assert 0 < cpu <= result.whole_run.duration_s * (threads + 1)
    assert not (exchange / "error.json").exists()
    sent = RunRequest.model_validate_json((exchange / "request.json").read_bytes())
    assert sent.model_path == str(tiny_model_path)
    assert sent.prompts_path is None


def test_local_launcher_leaves_error_json_when_the_model_cannot_load(tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    spec = _spec(tmp_path, "exp-2", broken)
    exchange = spec.exchange_dir
    events = []
    outcome = LocalLauncher().launch(spec, events.append)

    assert (outcome.exit_code, outcome.timed_out) == (1, None)
    assert [e.event for e in events][-1] == "error"
    error = RunError.model_validate_json((exchange / "error.json").read_bytes())
    assert (error.phase, error.experiment_id) == ("load", "exp-2")
    assert str(broken) in error.message
    assert not (exchange / "result.json").exists()
    assert "Traceback" in (exchange / "runner.log").read_text()
