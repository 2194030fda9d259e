"""Hand-written fakes at the runner's protocol seams (InferenceBackend, EnergyBackend).

They implement the protocols structurally. Time is a FakeClock the test controls: nothing sleeps, and every timestamp
a fake produces is a plain float the test can predict exactly (use dyadic steps such as 0.25 for exact arithmetic).
"""

from __future__ import annotations

from lem_runner.backends.base import GenerationRecord, LoadedModel
from lem_runner.energy.base import EnergyReading
from lem_runner.measurement.flops import ParameterCounts

DEFAULT_PARAMETERS = ParameterCounts(total=1_000_000, input_embedding=50_000, output_projection=50_000,
                                     tied_embeddings=False)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class FakeInferenceBackend:
    """Generates nothing; returns records with synthetic, exactly known token counts and timestamps.

    Each ``generate`` call starts at ``clock.now``; every request in the batch gets ``output_tokens`` token times
    ``start + ttft_s + k * step_s`` (k = 0..output_tokens-1), and the clock moves to the last of them.
    ``fail_on_generate_call`` (1-based) makes that call raise, to test where a failure is attributed.
    """

    name = "fake"

    def __init__(
        self,
        batch_size: int | None = 2,
        output_tokens: int = 4,
        input_tokens: int = 10,
        step_s: float = 0.25,
        ttft_s: float | None = None,
        parameters: ParameterCounts = DEFAULT_PARAMETERS,
        clock: FakeClock | None = None,
        journal: list[str] | None = None,
        fail_on_generate_call: int | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.output_tokens = output_tokens
        self.input_tokens = input_tokens
        self.step_s = step_s
        self.ttft_s = step_s if ttft_s is None else ttft_s
        self.parameters = parameters
        self.clock = clock or FakeClock()
        self.journal = journal if journal is not None else []
        self.fail_on_generate_call = fail_on_generate_call
        self.load_calls = 0
        self.generate_calls: list[list[str]] = []
        self.returned: list[list[GenerationRecord]] = []  # what each generate call returned, in order
        self.closed = False

    def load(self) -> LoadedModel:
        self.load_calls += 1
        self.journal.append("load")
        return LoadedModel(device_kind="cpu", parameters=self.parameters, libraries={"fake-engine": "1.0"},
                           details={"engine": "fake"})

    def generate(self, prompts: list[str]) -> list[GenerationRecord]:
        if self.load_calls == 0:
            raise RuntimeError("generate() called before load()")
        self.generate_calls.append(list(prompts))
        self.journal.append("generate")
        if self.fail_on_generate_call == len(self.generate_calls):
            raise RuntimeError(f"fake failure on generate call {len(self.generate_calls)}")
        start = self.clock.now
        times = [start + self.ttft_s + k * self.step_s for k in range(self.output_tokens)]
        if times:
            self.clock.now = times[-1]
        records = [GenerationRecord(self.input_tokens, self.output_tokens, start, list(times)) for _ in prompts]
        self.returned.append(records)
        return records

    def close(self) -> None:
        self.closed = True
        self.journal.append("close")


class FakeEnergyBackend:
    """Returns a configured energy figure, or None with a reason; refuses ``stop_tracking`` before ``start_tracking``."""

    def __init__(
        self,
        joules: float | None = 100.0,
        reason: str | None = None,
        name: str = "fake_energy",
        clock: FakeClock | None = None,
        warnings: list[str] | None = None,
        journal: list[str] | None = None,
    ) -> None:
        if joules is None and not reason:
            raise ValueError("a fake without joules needs the reason it has none")
        self.name = name
        self.joules = joules
        self.reason = reason
        self.clock = clock or FakeClock()
        self.warnings = list(warnings or [])
        self.journal = journal if journal is not None else []
        self.start_calls = 0
        self.stop_calls = 0
        self._t0: float | None = None

    def is_available(self) -> bool:
        return self.joules is not None

    def start_tracking(self) -> None:
        self.start_calls += 1
        self.journal.append("energy.start")
        self._t0 = self.clock.now

    def stop_tracking(self) -> EnergyReading:
        if self._t0 is None:
            raise RuntimeError("stop_tracking() called before start_tracking()")
        self.stop_calls += 1
        self.journal.append("energy.stop")
        duration = self.clock.now - self._t0
        self._t0 = None
        if self.joules is None:
            return EnergyReading(self.name, "not measured (fake)", duration, unavailable_reason=self.reason,
                                 warnings=list(self.warnings))
        return EnergyReading(self.name, "configured figure (fake)", duration, total_j=self.joules,
                             per_device_j={"0": self.joules}, warnings=list(self.warnings))


# ---------------------------------------------------------------------------------------------------------------------
# Controller-side fakes (FakeResultsRepository) are added with the controller.
# ---------------------------------------------------------------------------------------------------------------------
