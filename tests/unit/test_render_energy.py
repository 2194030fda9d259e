"""The energy block and the serving rows read the same after `lem run` and in `lem results show`, and a figure the
result leaves null shows as null, never a crash or a blank."""

from conftest import make_result
from llenergymeasure.render.energy import energy_rows, serving_rows
from llenergymeasure.render.experiment import render_experiment
from llenergymeasure.results.discover import Experiment
from rich.console import Console

SERVING = {"arrival": "poisson", "offered_rate_rps": 4.0, "achieved_rate_rps": 4.0, "completed_rate_rps": 4.0,
           "n_requests": 20, "n_ok": 20, "n_errors": 0, "n_timeouts": 0, "duration_s": 5.0,
           "output_tokens_per_s": 40.0, "inflight_mean": 1.0, "inflight_median": 1.0, "inflight_max": 2,
           "idle_time_s": 0.5, "slo": {"tpot_ms": 45.0}, "n_good": 10, "goodput_rps": None}


def test_summary_rows_are_the_start_of_the_full_block():
    """The run summary shows a subset of results show's energy block, in the same words and order."""
    r = make_result()
    short, full = energy_rows(r), energy_rows(r, full=True)
    assert short == [row for row in full if row in short] and len(full) > len(short)
    assert dict(short)["raw"] == "null — run is on CPU: NVML covers GPUs only"
    assert dict(short)["idle-adjusted"] == "not measured (energy not measured)"


def test_a_serving_result_with_an_slo_but_no_goodput_rate_shows_null(tmp_path):
    """Before: TypeError formatting None in the SLO goodput row (lem run's summary and results show crashed)."""
    r = make_result(serving=SERVING)
    rows = dict(serving_rows(r))
    # the bounds in words (it printed the Python dict "{'tpot_ms': 45.0}")
    assert rows["SLO goodput"].startswith("10/20 met TPOT ≤ 45 ms · null ·") and "{" not in rows["SLO goodput"]
    console = Console(width=200, record=True)
    render_experiment(console, Experiment(path=tmp_path, result=r, config=r.config))
    assert "SLO goodput" in console.export_text()


def test_the_steady_state_line_labels_its_null_energy(tmp_path):
    """The steady-state row ended in a bare `null` after the token count; it names the figure it nulls."""
    r = make_result(serving={**SERVING, "steady_state_start_s": 0.5, "steady_state_duration_s": 4.0,
                             "steady_state_output_tokens": 160, "steady_state_energy_j": None})
    console = Console(width=200, record=True)
    render_experiment(console, Experiment(path=tmp_path, result=r, config=r.config))
    (line,) = [ln for ln in console.export_text().splitlines() if "steady state" in ln]
    assert "4.00 s from 0.50 s · 160 tokens · energy null" in line


def test_phases_whose_energies_make_no_share_render_without_one():
    """Before: TypeError formatting a null energy_share (both phases 0 J on a short simulated-GPU run): `lem run`
    ended in an internal error after the result was written."""
    from llenergymeasure.render.energy import phase_row

    zero = {"time_s": 0.4, "energy_j": 0.0, "energy_share": None, "tokens": 8}
    r = make_result(phases={"prefill": zero, "decode": {**zero, "time_s": 1.2, "tokens": 32}, "method": "counter"})
    name, text = phase_row(r)
    assert name == "phases" and text == "prefill 0.000 J in 0.40 s · decode 0.000 J in 1.20 s"


def test_phases_of_a_window_the_counter_never_updated_in_render_null_with_the_reason(tmp_path):
    """A measured run whose phase energies are null (the counter did not update inside its window) says so on the
    summary's phases row and in the show view's phase table, instead of 0 J or no row."""
    from llenergymeasure.render.energy import phase_row

    reason = ("the energy counter of 0 did not update inside the 1.200 s window (it updates every 2000 ms, longer "
              "than the window), so every span inside it would read 0 J: not a measurement")
    null = {"time_s": 0.4, "energy_j": None, "energy_share": None, "tokens": 8}
    r = make_result(total_energy_j=0.0, phases={"prefill": null, "decode": {**null, "time_s": 0.8, "tokens": 16},
                                                "method": "counter", "energy_unavailable_reason": reason})
    assert phase_row(r) == ("phases", f"energy null — {reason}")
    console = Console(width=80, record=True)
    render_experiment(console, Experiment(path=tmp_path, result=r, config=r.config))
    shown = console.export_text()
    assert "did not update inside the 1.200 s window" in " ".join(shown.split())
    phase_lines = [ln for ln in shown.splitlines() if ln.startswith(("prefill", "decode"))]
    assert phase_lines and all("null" in ln for ln in phase_lines)


def test_multi_turn_figures_are_shown_per_conversation_and_per_turn_in_80_columns(tmp_path):
    from lem_runner.contract.conversation import TEMPLATED

    turns = [{"turn": k, "n": 4, "n_ok": 4, "input_tokens_mean": 20.0 + 30 * k, "ttft_p50_ms": 10.0 + k,
              "tpot_p50_ms": 5.0, "e2e_p50_ms": 40.0, "energy_j": 8.0, "energy_mean_j": 2.0} for k in range(10)]
    conv = {"n_conversations": 4, "n_complete": 3, "turns_sent": 40, "prompt_format": TEMPLATED,
            "think_lag_p50_ms": 0.25, "think_lag_p99_ms": 3.5, "duration_mean_s": 12.5,
            "energy_per_conversation_mean_j": 20.0, "energy_per_conversation_p50_j": 19.0, "by_turn": turns}
    r = make_result(serving={**SERVING, "conversations": conv})
    rows = dict(serving_rows(r))
    assert rows["conversations"] == "3 of 4 complete · 40 turns sent · mean 12.5 s · prompts by chat template"
    assert rows["per conversation"] == "J mean 20 J · p50 19 J · think lag p50 / p99 0.25 / 3.50 ms"
    assert rows["turn 2"] == "4/4 ok · prompt 80 tok · TTFT p50 12 ms · TPOT p50 5 ms · J mean 2 J"
    assert "turn 8" not in rows and rows["later turns"].startswith("2 more in result.json")
    console = Console(width=80, record=True)
    render_experiment(console, Experiment(path=tmp_path, result=r, config=r.config))
    text = console.export_text()
    assert "turn 7" in text and max(len(line) for line in text.splitlines()) <= 80


def test_energy_per_answer_the_first_answer_token_and_the_prefix_cache_have_their_rows():
    e = {"n": 20, "mean_j": 2.5, "p50_j": 2.0, "p90_j": 4.0}
    ttfat = {"n": 19, "mean_ms": 300.0, "p50_ms": 280.0, "p90_ms": 400.0, "p99_ms": 450.0, "min_ms": 200.0,
             "max_ms": 460.0}
    r = make_result(serving={**SERVING, "energy_per_request": e, "ttfat": ttfat, "ttfat_not_reached": 1,
                             "prefix_cache_hit_rate": 0.75, "prefix_cache_queried_tokens": 400,
                             "prefix_cache_hit_tokens": 300})
    rows = dict(serving_rows(r))
    assert rows["J/answer"].startswith("mean 2.5 · p50 2 · p90 4 J · J/token")
    assert "1 never reached the answer" in rows["TTFAT"]
    assert rows["prefix cache"] == "hit rate 75.0% · 300 of 400 prompt tokens cached (window)"
    off = dict(serving_rows(make_result(serving={**SERVING, "prefix_cache_queried_tokens": 0})))
    assert off["prefix cache"].startswith("hit rate - · 0 of 0") and "TTFAT" not in off and "J/answer" not in off
