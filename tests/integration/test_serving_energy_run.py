"""A serving run's energy windows and flags end to end: lem's runner drives the stub server (a protocol-seam fake of
an OpenAI server, serving_stub.py) over real sockets, energy from a real CounterEnergySource over a counter device
whose power curve the test scripts on the real clock, so the truth is known at every instant."""

from __future__ import annotations

import math
import time

import pytest
from fakes import FakeCounterDevice
from lem_runner.contract.config import ExperimentConfig
from lem_runner.contract.protocol import RunRequest
from lem_runner.energy.tracker import CounterEnergySource
from lem_runner.measurement.environment import collect_environment
from lem_runner.serving.run import run_serving
from lem_runner.session import HeldEngine
from serving_stub import StubServer


class _RealClock:
    """The runner's clock (perf_counter) as FakeCounterDevice reads it; a device read costs no time here."""

    @property
    def now(self) -> float:
        return time.perf_counter()

    @now.setter
    def now(self, _value: float) -> None:
        pass


class _Device(FakeCounterDevice):
    """A counter device on the real clock whose power is ``watts(t, phase)``: the run's phase (baseline, warmup,
    measure) is read from the Phase object the runner sets; every counter read's time and value are kept."""

    def __init__(self, watts) -> None:
        self.phase = "load"
        self.joules = 0.0
        self.last_t = time.perf_counter()
        self.watts = watts
        super().__init__(_RealClock(), self._joules_at)
        self.log: list[tuple[float, float]] = []  # (time, joules) of every counter read

    def _joules_at(self, t: float) -> float:
        # the integral of watts over (last_t, t], by 1 ms steps (the curve is smooth within a phase)
        while self.last_t < t:
            dt = min(0.001, t - self.last_t)
            self.joules += self.watts(self.last_t + dt / 2, self.phase) * dt
            self.last_t += dt
        return self.joules

    def energy_mj(self) -> float:
        t = time.perf_counter()
        value = super().energy_mj()  # the energy at (about) t: the curve is read at the call's start
        self.log.append((t, value / 1000.0))
        return value


class _Phase:
    def __init__(self, device: _Device) -> None:
        self.device = device
        self._name = "load"

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self.device._joules_at(time.perf_counter())  # the energy so far at the old phase's power
        self.device.phase = self._name = value


def _run(tmp_path, stub: StubServer, device: _Device, sample_hz: float, baseline: dict, **serving):
    cfg = ExperimentConfig(name="e", model="stub-model", scenario="serving", device="cpu", max_output_tokens=4,
                           energy={"sample_hz": sample_hz, "timeseries": False, "baseline": baseline},
                           serving={"endpoint": stub.base_url, "warmup_requests": 0, **serving})
    source = CounterEnergySource([device], "fake_counter", "counter of a scripted device", sample_hz=sample_hz)
    return run_serving(RunRequest(experiment_id="e", config=cfg, model_path="/nonexistent"),
                       energy_for=lambda kind: source,
                       environment_for=lambda libs, kind, cuda: collect_environment(libs, [], False, None, None),
                       emit=lambda event: None, phase=_Phase(device), out_dir=tmp_path, held=HeldEngine())


def test_total_energy_without_a_power_series_covers_the_span_it_reports(tmp_path):
    # no sampler (energy.sample_hz: 0): the counter is read only when tracking opens and closes, so the total's
    # energy is the reading's; its duration must be the same span, and that span tight around the load
    device = _Device(lambda t, phase: 100.0 + 60.0 * math.sin(2 * math.pi * t / 0.37))
    with StubServer(ttft_s=0.01, token_delay_s=0.005) as stub:
        result = _run(tmp_path, stub, device, 0, {"mode": "off"}, arrival="poisson", rate=50, n_requests=20)
    (t0, j0), (t1, j1) = device.log[-2:]  # the window's opening and closing reads (the probe's came before)
    total = result.windows["total"]
    assert total.energy_j == pytest.approx(j1 - j0, rel=1e-9)
    assert total.duration_s == pytest.approx(t1 - t0, abs=1e-4)
    assert total.mean_power_w == pytest.approx((j1 - j0) / (t1 - t0), rel=1e-3)
    assert 0 <= total.duration_s - result.serving.duration_s < 0.05  # tight around the load (it was +212 ms)
    assert "reading's own span" in total.method


def test_a_baseline_above_the_loads_power_is_flagged_on_the_serving_figures(tmp_path):
    # idle at 126 W, 110 W under load (a stale, hot baseline): the adjusted figures are negative and flagged
    device = _Device(lambda t, phase: 126.0 if phase == "baseline" else 110.0)
    with StubServer(ttft_s=0.01, token_delay_s=0.01) as stub:
        result = _run(tmp_path, stub, device, 50, {"mode": "fresh", "duration_s": 0.5}, arrival="constant", rate=40,
                      n_requests=24, slo={"e2e_ms": 60_000})
    s = result.serving
    assert result.energy.baseline.power_w == pytest.approx(126.0, rel=0.02)
    assert s.energy_per_request.mean_adjusted_j < 0 and s.energy_per_good_token_adjusted_j < 0
    assert s.energy_per_completed_request_adjusted_j < 0
    assert "baseline_exceeds_raw" in result.quality_flags
    assert s.schedule_rate_rps == pytest.approx(40.0, rel=1e-6)  # a constant schedule realises its rate exactly


def test_answers_cut_by_the_request_timeout_are_counted_and_flagged(tmp_path):
    # 8 requests of 1..8 tokens (uniform, serving seed 5), a token every 0.2 s: up to 4 tokens end by 0.6 s, from 5
    # on they need 0.8 s or more; the 0.7 s timeout cuts exactly the draws of 5 and over
    import random

    top = random.Random(5)
    random.Random(top.random())
    lengths = random.Random(top.random())
    draws = [lengths.randint(1, 8) for _ in range(8)]
    cut = sum(d >= 5 for d in draws)
    assert 0 < cut < 8, draws
    device = _Device(lambda t, phase: 100.0)
    with StubServer(ttft_s=0.0, token_delay_s=0.2) as stub:
        result = _run(tmp_path, stub, device, 50, {"mode": "off"}, arrival="constant", rate=50, n_requests=8,
                      seed=5, output_tokens={"dist": "uniform", "min": 1, "max": 8}, request_timeout_s=0.7)
    s = result.serving
    assert (s.n_timeouts, s.n_ok) == (cut, 8 - cut)
    assert "request_timeouts" in result.quality_flags
    assert any(f"{cut} of 8 request(s) were cut by serving.request_timeout_s (0.7 s)" in w for w in result.warnings)
    assert result.output_tokens == sum(d for d in draws if d < 5)  # the cut answers count no token
