"""run_measurement driven through its seams with FakeInferenceBackend and FakeEnergySource."""

from __future__ import annotations

import math

import pytest
from conftest import make_config, make_environment
from fakes import ContentTimedBackend, FakeEnergySource, FakeInferenceBackend
from lem_runner.contract.fingerprint import measurement_config_hash
from lem_runner.contract.protocol import RunRequest
from lem_runner.measure import Phase, run_measurement
from lem_runner.prompts import load_prompts
from lem_runner.records import LoadedModel


def _run(config, backend, energy, phase=None, prompts_path=None):
    """Run one measurement; returns the result, the events emitted, and the LoadedModels the factories received."""
    events, seen = [], []

    def energy_for(loaded: LoadedModel):
        seen.append(("energy", loaded))
        return energy

    def environment_for(loaded: LoadedModel):
        seen.append(("environment", loaded))
        return make_environment()

    request = RunRequest(experiment_id="exp-1", config=config, model_path="/models/fake")
    clock = getattr(backend, "clock", None)
    result = run_measurement(request, backend, energy_for, environment_for, events.append, phase, prompts_path,
                             **({"clock": clock} if clock is not None else {}))
    return result, events, seen


@pytest.mark.parametrize(("n_prompts", "batch_size", "warmup"), [(5, 2, 2), (4, 4, 1), (7, 3, 0), (3, 1, 5)])
def test_warmup_batches_run_but_are_not_counted(n_prompts, batch_size, warmup):
    config = make_config(n_prompts=n_prompts, warmup={"n_batches": warmup})
    backend = FakeInferenceBackend(batch_size=batch_size, output_tokens=4, input_tokens=10)
    result, _, _ = _run(config, backend, FakeEnergySource())
    n_batches = math.ceil(n_prompts / batch_size)
    assert len(backend.generate_calls) == warmup + n_batches
    assert result.whole_run.n_requests == n_prompts
    assert result.warmup.batches == warmup
    assert result.backend_details["n_batches"] == n_batches
    measured = [p for call in backend.generate_calls[warmup:] for p in call]
    assert measured == load_prompts(config.prompts, n_prompts, config.seed)
    assert all(len(call) <= batch_size for call in backend.generate_calls)


def test_an_engine_without_batch_size_gets_every_prompt_at_once():
    backend = FakeInferenceBackend(batch_size=None)
    result, _, _ = _run(make_config(n_prompts=6, warmup={"n_batches": 1}), backend, FakeEnergySource())
    assert [len(call) for call in backend.generate_calls] == [6, 6]
    assert result.whole_run.n_requests == 6


def test_token_totals_are_the_sums_of_the_measured_records():
    backend = FakeInferenceBackend(batch_size=2, output_tokens=3, input_tokens=11)
    result, _, _ = _run(make_config(n_prompts=5, warmup={"n_batches": 2}), backend, FakeEnergySource())
    measured = [r for call in backend.returned[2:] for r in call]
    assert result.whole_run.input_tokens == sum(r.input_tokens for r in measured) == 55
    assert result.output_tokens == sum(r.output_tokens for r in measured) == 15
    assert result.whole_run.total_tokens == 70
    counts = backend.parameters
    # per request (no model shape, so no attention term): prefill 2*N_body*11 + 2*N_head, two decode steps
    per_request = 2.0 * counts.non_embedding * 11 + 2.0 * counts.output_projection + 2 * 2.0 * counts.compute
    assert result.headline.flops == pytest.approx(5 * per_request)
    assert result.flops.prefill + result.flops.decode == pytest.approx(result.headline.flops)
    assert result.flops.method
    assert result.backend_details["parameters_total"] == counts.total


def test_energy_per_token_is_joules_over_output_tokens():
    energy = FakeEnergySource(joules=40.0)
    backend = FakeInferenceBackend(batch_size=2, output_tokens=4)
    result, _, _ = _run(make_config(n_prompts=5), backend, energy)
    assert result.output_tokens == 20
    assert result.total_energy_j == 40.0
    assert result.energy_per_token_j == pytest.approx(2.0)
    assert (result.energy.source, result.total_energy_j) == ("fake_energy", 40.0)
    assert [(d.id, d.energy_j) for d in result.energy.devices] == [("0", 40.0)]
    assert (energy.start_calls, energy.stop_calls) == (1, 1)


def test_energy_window_covers_only_the_measured_batches():
    journal: list[str] = []
    backend = FakeInferenceBackend(batch_size=2, journal=journal)
    _run(make_config(n_prompts=4, warmup={"n_batches": 3}), backend, FakeEnergySource(journal=journal))
    assert journal == ["load"] + ["generate"] * 3 + ["energy.start"] + ["generate"] * 2 + ["energy.stop"]


def test_null_energy_stays_null_and_keeps_its_reason():
    energy = FakeEnergySource(joules=None, reason="run is on CPU: no counter")
    result, events, _ = _run(make_config(), FakeInferenceBackend(), energy)
    assert result.total_energy_j is None
    assert result.energy_per_token_j is None
    assert result.total_energy_j is None
    assert result.energy.unavailable_reason == "run is on CPU: no counter"
    assert events[-1].data["energy_j"] is None
    assert not any("energy counter" in w for w in result.warnings)


def test_latency_statistics_are_the_fakes_synthetic_timings():
    backend = FakeInferenceBackend(batch_size=2, output_tokens=4, step_s=0.25, ttft_s=0.125)
    result, _, _ = _run(make_config(n_prompts=5), backend, FakeEnergySource())
    ttft, itl = result.ttft, result.itl
    assert ttft.n == 5
    # every prompt is submitted when the window opens; each batch takes 0.125 + 3 x 0.25 = 0.875 s, so the first
    # tokens of batches 0, 1, 2 (2 + 2 + 1 requests) come 125, 1000 and 1875 ms after submission
    assert (ttft.mean_ms, ttft.p50_ms, ttft.min_ms, ttft.max_ms) == (825.0, 1000.0, 125.0, 1875.0)
    assert result.batch_ttft.n == 5 and (result.batch_ttft.min_ms, result.batch_ttft.max_ms) == (125.0, 125.0)
    assert itl.n == 5 * 3
    assert (itl.mean_ms, itl.p50_ms, itl.p90_ms, itl.p99_ms, itl.min_ms, itl.max_ms) == (250.0,) * 6


def test_itl_is_the_gap_between_steps_when_a_step_emits_several_tokens_and_tpot_is_per_token():
    # speculative decoding: a 100 ms prefill, then steps 20 ms apart, each emitting 3 tokens at one instant; 31
    # tokens = the first + 10 steps. As vllm bench serve measures it: ITL 20 ms per step (chunk), TPOT per request
    # (last token - first token) / (output tokens - 1) = 200 ms / 30 = 6.67 ms. Per token gaps read ITL p50 0 ms.
    backend = FakeInferenceBackend(batch_size=2, output_tokens=31, step_s=0.02, ttft_s=0.1, tokens_per_step=3)
    result, _, _ = _run(make_config(n_prompts=4), backend, FakeEnergySource())
    itl = result.itl
    assert (itl.min_ms, itl.p50_ms, itl.max_ms) == pytest.approx((20.0, 20.0, 20.0))
    assert itl.n == 4 * 10
    tpot = result.tpot
    assert tpot.n == 4
    assert (tpot.min_ms, tpot.p50_ms, tpot.max_ms) == pytest.approx((200.0 / 30,) * 3)
    assert "distinct" in result.latency_definitions["itl"] and "output tokens - 1" in result.latency_definitions["tpot"]


def test_tpot_with_one_token_per_step_is_the_step():
    backend = FakeInferenceBackend(batch_size=2, output_tokens=4, step_s=0.25, ttft_s=0.125)
    result, _, _ = _run(make_config(n_prompts=5), backend, FakeEnergySource())
    assert result.tpot.n == 5 and (result.tpot.min_ms, result.tpot.max_ms) == pytest.approx((250.0, 250.0))


def test_no_output_tokens_gives_no_latency_and_no_per_token_energy():
    backend = FakeInferenceBackend(output_tokens=0)
    result, _, _ = _run(make_config(), backend, FakeEnergySource(joules=5.0))
    assert (result.output_tokens, result.ttft, result.itl) == (0, None, None)
    assert result.total_energy_j == 5.0 and result.energy_per_token_j is None
    assert "no output tokens were generated" in result.warnings


def test_energy_warnings_are_carried_and_a_short_window_is_flagged():
    result, _, _ = _run(make_config(), FakeInferenceBackend(), FakeEnergySource(warnings=["counter did not tick"]))
    assert "counter did not tick" in result.warnings
    short_window_flagged = any("measurement window" in w for w in result.warnings)
    assert short_window_flagged == (result.inference_time_s < 1.0)


def test_events_come_in_order():
    config = make_config(n_prompts=5, warmup={"n_batches": 2})
    _, events, _ = _run(config, FakeInferenceBackend(batch_size=2), FakeEnergySource())
    kinds = [e.event for e in events]
    assert kinds == ["model_loaded", "warmup", "warmup", "progress", "progress", "progress", "measured"]
    assert [(e.done, e.total) for e in events if e.event == "warmup"] == [(1, 2), (2, 2)]
    progress = [(e.done, e.total) for e in events if e.event == "progress"]
    assert progress == [(2, 5), (4, 5), (5, 5)]


def test_result_identifies_config_model_and_environment():
    config = make_config(n_prompts=3, pytorch={"batch_size": 2})
    backend = FakeInferenceBackend()
    result, _, seen = _run(config, backend, FakeEnergySource())
    assert (result.experiment_id, result.model_path, result.config) == ("exp-1", "/models/fake", config)
    assert result.measurement_config_hash == measurement_config_hash(config)
    assert result.environment == make_environment()
    assert [kind for kind, _ in seen] == ["energy", "environment"]
    assert all(loaded.device_kind == "cpu" for _, loaded in seen)
    assert result.backend_details["engine"] == "fake"
    assert result.start_time <= result.end_time
    if result.inference_time_s > 0:
        assert result.output_tokens_per_second == pytest.approx(result.output_tokens / result.inference_time_s)
    assert backend.load_calls == 1 and backend.closed is False  # closing is the caller's job


def test_prompts_path_overrides_the_configured_file(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"prompt": "alpha"}\n{"prompt": "beta"}\n', encoding="utf-8")
    config = make_config(n_prompts=3, prompts={"source": "jsonl", "path": "/controller/side/p.jsonl"},
                         warmup={"n_batches": 0})
    backend = FakeInferenceBackend(batch_size=3)
    result, _, _ = _run(config, backend, FakeEnergySource(), prompts_path=str(path))
    assert backend.generate_calls == [["alpha", "beta", "alpha"]]
    # fewer prompts than n_prompts: cycled, and the result says so
    assert "prompts file has 2 prompt(s) but n_prompts is 3: cycled, each measured 1.5 times on average" in \
        result.warnings


def test_a_jsonl_file_with_enough_prompts_or_the_builtin_set_warns_of_nothing(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "alpha"}\n{"prompt": "beta"}\n', encoding="utf-8")
    config = make_config(n_prompts=2, prompts={"source": "jsonl", "path": str(path)}, warmup={"n_batches": 0})
    result, _, _ = _run(config, FakeInferenceBackend(batch_size=2), FakeEnergySource())
    assert not any("prompts file" in w for w in result.warnings)


@pytest.mark.parametrize(("fail_on", "phase_name", "energy_started"), [(1, "warmup", 0), (2, "measure", 1)])
def test_a_failure_is_attributed_to_its_phase(fail_on, phase_name, energy_started):
    phase = Phase()
    energy = FakeEnergySource()
    backend = FakeInferenceBackend(fail_on_generate_call=fail_on)
    with pytest.raises(RuntimeError, match="fake failure"):
        _run(make_config(warmup={"n_batches": 1}), backend, energy, phase=phase)
    assert phase.name == phase_name
    assert energy.start_calls == energy_started


def test_a_prompt_error_is_attributed_to_load():
    phase = Phase()
    config = make_config(prompts={"source": "jsonl", "path": "/no/such/prompts.jsonl"})
    with pytest.raises(ValueError, match="prompts.jsonl"):
        _run(config, FakeInferenceBackend(), FakeEnergySource(), phase=phase)
    assert phase.name == "load"


# --- the loop with a counter-backed source on the fake clock ---------------------------------------------------------


def _counter_energy(backend, idle_w=60.0, busy_w=160.0, busy_from=1.0, sample_hz=0.0):
    """A real CounterEnergySource over a FakeCounterDevice: idle power until ``busy_from`` (the baseline's second),
    then busy power for warmup and the window. With ``sample_hz`` the sampler ticks at every token (no thread)."""
    from fakes import FakeCounterDevice
    from lem_runner.energy.tracker import CounterEnergySource

    clock = backend.clock

    def joules_at(t):
        return idle_w * min(t, busy_from) + busy_w * max(0.0, t - busy_from)

    dev = FakeCounterDevice(clock, joules_at, update_period_s=0.0)
    tracker = CounterEnergySource([dev], name="fake_counter", method="fake counter", sample_hz=sample_hz,
                                   clock=clock, sleep=clock.sleep, threaded=False)
    backend.on_step = tracker.tick
    return tracker


def test_raw_and_idle_adjusted_energy_per_token_come_from_the_baseline():
    backend = FakeInferenceBackend(batch_size=2, output_tokens=4, step_s=0.25)
    config = make_config(n_prompts=4, energy={"baseline": {"mode": "fresh", "duration_s": 1.0}})
    result, events, _ = _run(config, backend, _counter_energy(backend, busy_from=1.5))  # probe + 1 s baseline: idle
    window = result.inference_time_s
    assert window == pytest.approx(2.0)  # two batches of 4 steps at 0.25 s
    e = result.energy
    assert e.baseline.power_w == pytest.approx(60.0, rel=1e-3) and e.baseline.source == "fresh"
    assert result.total_energy_j == pytest.approx(160.0 * window, rel=1e-6)
    assert result.adjusted_energy_j == pytest.approx(100.0 * window, rel=1e-3)
    assert result.energy_per_token_j == pytest.approx(320.0 / 16, rel=1e-6)
    assert result.adjusted_energy_per_token_j == pytest.approx(200.0 / 16, rel=1e-3)
    assert any(ev.event == "baseline" for ev in events)


def test_a_cached_baseline_from_the_request_is_reused_not_remeasured():
    from datetime import UTC, datetime

    from lem_runner.contract.energy import IdleBaseline

    backend = FakeInferenceBackend(batch_size=2, output_tokens=4)
    energy = FakeEnergySource(joules=50.0, baseline_w=70.0)
    cached = IdleBaseline(power_w=69.0, duration_s=5.0, measured_at=datetime.now(UTC), device_uuids=["GPU-fake-0"],
                          conditions=energy.idle_conditions())
    request = RunRequest(experiment_id="exp-1", config=make_config(n_prompts=2), model_path="/m",
                         cached_baselines=[cached])
    result = run_measurement(request, backend, lambda _l: energy, lambda _l: make_environment(), lambda _e: None,
                             clock=backend.clock)
    assert (result.energy.baseline.power_w, result.energy.baseline.source) == (69.0, "cached")
    assert result.energy.baseline.cache_check.outcome == "reused"
    assert energy.baseline_calls == [1.0]  # the spot-check only (70 W vs 69 W cached)


def test_windowed_mode_repeats_prompts_and_counts_exactly_the_span():
    backend = FakeInferenceBackend(batch_size=2, output_tokens=4, step_s=0.25)
    config = make_config(n_prompts=2, warmup={"n_batches": 0}, window={"mode": "windowed", "duration_s": 2.5})
    result, _, _ = _run(config, backend, _counter_energy(backend, sample_hz=4.0))
    assert result.measurement_methodology == "windowed"
    assert len(backend.generate_calls) == 3  # 1 s per call: the third starts at 2.0 < 2.5
    w = result.windows["windowed"]
    # tokens at 0.25..1.0, 1.25..2.0, 2.25..3.0 for two requests; inside (0, 2.5]: 4 + 4 + 2 per request
    assert (w.duration_s, w.output_tokens) == (2.5, 20)
    assert result.output_tokens_per_second == pytest.approx(20 / 2.5)
    assert w.energy_j == pytest.approx(160.0 * 2.5, rel=1e-3)  # within the counter's (1 ms) update period
    assert result.total_energy_j == w.energy_j
    assert result.windows["total"].output_tokens == 24


def test_steady_state_is_always_computed_and_headlines_when_asked():
    backend = FakeInferenceBackend(batch_size=2, output_tokens=5, step_s=0.25, ttft_s=0.5)
    config = make_config(n_prompts=4, window={"mode": "steady_state"})
    result, _, _ = _run(config, backend, _counter_energy(backend, sample_hz=4.0))
    s = result.windows["steady_state"]
    # each batch: prefill 0.5 s, then decoding from 0.5 to 1.5 s; steady spans exclude the prefills
    assert s.duration_s == pytest.approx(2.0) and s.output_tokens == 16
    assert result.measurement_methodology == "steady_state" and result.output_tokens_per_second == pytest.approx(8.0)
    assert result.windows["total"].tokens_per_second == pytest.approx(20 / 3.0)
    assert result.phases.prefill.time_s == pytest.approx(1.0) and result.phases.decode.time_s == pytest.approx(2.0)
    assert result.phases.prefill.energy_j == pytest.approx(160.0, rel=1e-3)


def test_convergence_warmup_is_recorded():
    backend = FakeInferenceBackend(batch_size=2, output_tokens=4)
    config = make_config(n_prompts=4, warmup={"mode": "convergence", "window": 3, "max_batches": 5})
    result, _, _ = _run(config, backend, FakeEnergySource())
    # the fake's batches all take the same time: CV 0 after the first three
    assert (result.warmup.mode, result.warmup.batches) == ("convergence", 3)
    assert result.warmup.final_cv == 0.0 and result.warmup.stop_reason.startswith("converged")


def _content_timed(config, batch_latencies, cold_calls=()):
    """A backend whose batch k (of the run's prompt order) takes batch_latencies[k] seconds once warm, and whose
    first len(cold_calls) calls take cold_calls[i] seconds instead, whatever the content."""
    prompts = load_prompts(config.prompts, config.n_prompts, config.seed, None)
    size = config.pytorch.batch_size

    def latency(batch, call_no):
        if call_no <= len(cold_calls):
            return cold_calls[call_no - 1]
        return batch_latencies[prompts.index(batch[0]) // size]

    return ContentTimedBackend(latency, batch_size=size, output_tokens=4)


def test_convergence_warmup_of_a_warm_engine_with_unequal_batches_converges():
    # fully warm from the first call; batch content alone makes latencies differ (CV 0.10 over any three of them)
    config = make_config(n_prompts=8, pytorch={"batch_size": 2},
                         warmup={"mode": "convergence", "window": 3, "max_batches": 10, "cv_threshold": 0.05})
    backend = _content_timed(config, [0.97, 1.09, 1.19, 1.09])
    result, _, _ = _run(config, backend, FakeEnergySource())
    assert result.warmup.stop_reason.startswith("converged")
    assert result.warmup.batches == 3 and result.warmup.final_cv == pytest.approx(0.0, abs=1e-9)
    assert result.warmup.latencies_s == pytest.approx([0.97, 0.97, 0.97])
    assert "same batch" in result.warmup.method
    # the measured run still covers every batch once
    assert [len(c) for c in backend.generate_calls[3:]] == [2, 2, 2, 2]


def test_convergence_warmup_with_uniform_content_converges_only_once_the_engine_is_warm():
    config = make_config(n_prompts=8, pytorch={"batch_size": 2},
                         warmup={"mode": "convergence", "window": 3, "max_batches": 12, "cv_threshold": 0.05})
    cold = [3.0, 2.0, 1.5, 1.2]  # the engine's first four calls are slow; then every batch takes 1.0 s
    result, _, _ = _run(config, _content_timed(config, [1.0] * 4, cold), FakeEnergySource())
    assert result.warmup.stop_reason.startswith("converged")
    assert result.warmup.batches == 7  # calls 5, 6, 7 are the first three warm ones
    assert result.warmup.latencies_s[-3:] == pytest.approx([1.0, 1.0, 1.0])


def test_convergence_warmup_of_a_cold_engine_with_unequal_batches_waits_for_warmth_not_content():
    config = make_config(n_prompts=8, pytorch={"batch_size": 2},
                         warmup={"mode": "convergence", "window": 3, "max_batches": 12, "cv_threshold": 0.05})
    result, _, _ = _run(config, _content_timed(config, [0.97, 1.09, 1.19, 1.09], [2.0, 1.5]), FakeEnergySource())
    assert result.warmup.batches == 5 and result.warmup.final_cv == pytest.approx(0.0, abs=1e-9)


def test_measuring_and_assembling_meet_only_in_the_observation():
    """measure() returns what the run saw; assemble_result derives the figures from that record alone: it runs no
    prompt and reads no counter, and the same observation always gives the same result."""
    from lem_runner.assemble import assemble_result
    from lem_runner.measure import measure

    backend = FakeInferenceBackend(batch_size=2, output_tokens=4)
    energy = FakeEnergySource(joules=40.0)
    request = RunRequest(experiment_id="exp-1", config=make_config(n_prompts=5, warmup={"n_batches": 1}),
                         model_path="/models/fake")
    obs = measure(request, backend, lambda _l: energy, lambda _e: None, **_clock(backend))
    assert (len(obs.records), obs.n_batches, obs.n_calls, obs.warmup.batches) == (5, 3, 3, 1)
    assert obs.reading.total_j == 40.0 and obs.w1 >= obs.w0
    calls, stops = len(backend.generate_calls), energy.stop_calls
    first = assemble_result(request, obs, make_environment())
    assert first == assemble_result(request, obs, make_environment())
    assert (len(backend.generate_calls), energy.stop_calls) == (calls, stops)
    assert (first.output_tokens, first.total_energy_j, first.energy_per_token_j) == (20, 40.0, 2.0)
    assert first.whole_run.n_requests == 5 and first.backend_details["measured_generate_calls"] == 3


def _clock(backend) -> dict:
    clock = getattr(backend, "clock", None)
    return {"clock": clock} if clock is not None else {}
def test_process_cpu_time_covers_the_measured_calls_and_not_warmup():
    """The fake spins a known amount of CPU per call (its own thread_time, the truth); sleeping would add wall time
    but no CPU. Warmup's two calls spin too but lie outside the window."""
    backend = FakeInferenceBackend(batch_size=2, burn_cpu_s=0.05)
    result, _, _ = _run(make_config(n_prompts=6, warmup={"n_batches": 2}), backend, FakeEnergySource())
    measured = sum(backend.burned_cpu_s[2:])
    assert len(backend.burned_cpu_s) == 5 and measured >= 0.15
    assert measured <= result.whole_run.process_cpu_s < measured + 0.04  # < the burn of one warmup call (0.05 s)


def test_process_cpu_time_is_null_for_an_engine_in_child_processes():
    backend = FakeInferenceBackend(batch_size=2, burn_cpu_s=0.01, engine_in_process=False)
    result, _, _ = _run(make_config(n_prompts=4), backend, FakeEnergySource())
    assert result.whole_run.process_cpu_s is None
