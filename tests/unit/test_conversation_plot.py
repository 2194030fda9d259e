"""conversations-<run>.png: the per-turn figures of result.serving.conversations drawn as they are (medians by turn,
prompt length on its own axis), energy by turn where measured, else the reason and nothing at zero; lem results plot
writes one per multi-turn run."""

from __future__ import annotations

from conftest import make_result
from llenergymeasure.results.conversation_plot import conversation_figure, conversation_plot
from llenergymeasure.results.discover import Experiment

SERVING = {"arrival": "poisson", "offered_rate_rps": 1.0, "achieved_rate_rps": 1.0, "completed_rate_rps": 1.0,
           "n_requests": 12, "n_ok": 12, "n_errors": 0, "n_timeouts": 0, "duration_s": 5.0,
           "output_tokens_per_s": 40.0, "inflight_mean": 1.0, "inflight_median": 1.0, "inflight_max": 2,
           "idle_time_s": 0.5}


def _result(energy: list[float | None]):
    turns = [{"turn": k, "n": 4, "n_ok": 4, "input_tokens_mean": 30.0 * (k + 1), "ttft_p50_ms": 10.0 + 5 * k,
              "tpot_p50_ms": 4.0, "e2e_p50_ms": 50.0 + 5 * k, "energy_mean_j": e} for k, e in enumerate(energy)]
    conv = {"n_conversations": 4, "n_complete": 4, "turns_sent": 12, "prompt_format": "plain",
            "by_turn": turns}
    return make_result(serving={**SERVING, "conversations": conv})


def test_each_turns_medians_and_prompt_length_are_drawn_and_measured_energy_beside_them(tmp_path):
    e = Experiment(tmp_path, _result([1.5, 2.0, 2.5]))
    _, (left, right) = conversation_figure(e)
    lines = {line.get_label(): list(line.get_ydata()) for line in left.get_lines()}
    assert lines["TTFT p50"] == [10.0, 15.0, 20.0] and lines["E2E p50"] == [50.0, 55.0, 60.0]
    (prompt,) = [ln for ax in left.figure.axes if ax not in (left, right) for ln in ax.get_lines()]
    assert list(prompt.get_ydata()) == [30.0, 60.0, 90.0]
    assert [list(ln.get_ydata()) for ln in right.get_lines()] == [[1.5, 2.0, 2.5]]
    written = conversation_plot(e, tmp_path / "c.png")
    assert written.path.read_bytes()[:4] == b"\x89PNG" and "12 turns sent" in written.title


def test_unmeasured_energy_is_said_not_drawn(tmp_path):
    _, (_, right) = conversation_figure(Experiment(tmp_path, _result([None, None, None])))
    assert right.get_lines() == [] and "energy per turn is null" in right.texts[0].get_text()


def test_lem_results_plot_writes_one_per_multi_turn_run(tmp_path):
    from llenergymeasure.results.plot import plot_results

    run = tmp_path / "runs" / "mt-1"
    run.mkdir(parents=True)
    r = _result([None, None, None])
    (run / "result.json").write_text(r.model_dump_json())
    written = plot_results(tmp_path / "runs")
    assert any(p.path.name == f"conversations-{r.experiment_id}.png" for p in written)
