"""Hand-written fakes at the runner's protocol seams (InferenceBackend, EnergySource, CounterDevice).

They implement the protocols structurally. Time is a FakeClock the test controls: nothing sleeps, and every timestamp
a fake produces is a plain float the test can predict exactly (use dyadic steps such as 0.25 for exact arithmetic).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from lem_runner.contract import (
    ERROR_FILE,
    RESULT_FILE,
    ExperimentConfig,
    ExperimentResult,
    ProgressEvent,
    RunError,
)
from lem_runner.contract.atomic import atomic_write_text
from lem_runner.contract.energy import DeviceIdleState, IdleBaseline
from lem_runner.energy.base import EnergyReading
from lem_runner.energy.device import DeviceSample
from lem_runner.records import GenerationRecord, LoadedModel, ParameterCounts
from llenergymeasure.launchers.base import LOG_FILE, Launcher, LaunchOutcome, LaunchSpec

DEFAULT_PARAMETERS = ParameterCounts(total=1_000_000, input_embedding=50_000, output_projection=50_000,
                                     tied_embeddings=False)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 1e-6)  # a real sleep always takes some time, so polling loops end


class FakeInferenceBackend:
    """Generates nothing; returns records with synthetic, exactly known token counts and timestamps.

    Each ``generate`` call starts at ``clock.now``; every request in the batch gets ``output_tokens`` token times
    ``start + ttft_s + k * step_s`` (k = 0..output_tokens-1), and the clock moves to the last of them.
    ``fail_on_generate_call`` (1-based) makes that call raise, to test where a failure is attributed.
    ``on_step`` is called at each token time with the clock there (e.g. a sampler's ``tick``).
    ``burn_cpu_s`` makes each call spin for that much real CPU time (its thread's, summed into ``burned_cpu_s``), as an
    engine computing in the runner's process does; ``engine_in_process=False`` reports an engine in child processes.

    ``slots`` makes it a continuous-batching engine given the whole call at once (as vLLM is): at most ``slots``
    requests run together, the rest wait in its queue, and a wave starts when the one before it has finished; every
    record keeps the call's ``start``. ``reports_scheduled`` fills in ``scheduled`` (when each request's prefill
    began), as an engine that exposes its scheduling times does; without it the analysis estimates it from the steps.
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
        on_step: Callable[[], None] | None = None,
        slots: int | None = None,
        reports_scheduled: bool = False,
        device_kind: str = "cpu",
        burn_cpu_s: float = 0.0,
        engine_in_process: bool = True,
    ) -> None:
        self.device_kind = device_kind
        self.burn_cpu_s = burn_cpu_s
        self.burned_cpu_s: list[float] = []  # CPU time each generate call spun, in call order
        self.engine_in_process = engine_in_process
        self.slots = slots
        self.reports_scheduled = reports_scheduled
        self.batch_size = batch_size
        self.output_tokens = output_tokens
        self.input_tokens = input_tokens
        self.step_s = step_s
        self.ttft_s = step_s if ttft_s is None else ttft_s
        self.parameters = parameters
        self.clock = clock or FakeClock()
        self.journal = journal if journal is not None else []
        self.fail_on_generate_call = fail_on_generate_call
        self.on_step = on_step
        self.load_calls = 0
        self.generate_calls: list[list[str]] = []
        self.returned: list[list[GenerationRecord]] = []  # what each generate call returned, in order
        self.closed = False

    def load(self) -> LoadedModel:
        self.load_calls += 1
        self.journal.append("load")
        return LoadedModel(device_kind=self.device_kind, parameters=self.parameters, libraries={"fake-engine": "1.0"},
                           details={"engine": "fake"}, engine_in_process=self.engine_in_process)

    def generate(self, prompts: list[str]) -> list[GenerationRecord]:
        if self.load_calls == 0:
            raise RuntimeError("generate() called before load()")
        self.generate_calls.append(list(prompts))
        self.journal.append("generate")
        if self.fail_on_generate_call == len(self.generate_calls):
            raise RuntimeError(f"fake failure on generate call {len(self.generate_calls)}")
        if self.burn_cpu_s:
            c0 = time.thread_time()
            while time.thread_time() - c0 < self.burn_cpu_s:
                pass
            self.burned_cpu_s.append(time.thread_time() - c0)
        start = self.clock.now
        slots = self.slots or len(prompts)
        wave_s = self.ttft_s + max(0, self.output_tokens - 1) * self.step_s
        records = []
        for i in range(len(prompts)):
            begins = start + (i // slots) * wave_s
            times = [begins + self.ttft_s + k * self.step_s for k in range(self.output_tokens)]
            records.append(GenerationRecord(self.input_tokens, self.output_tokens, start, times,
                                            scheduled=begins if self.reports_scheduled else None))
        for t in sorted({t for r in records for t in r.token_times}):
            self.clock.now = max(self.clock.now, t)
            if self.on_step is not None:
                self.on_step()
        self.clock.now = max([self.clock.now, start, *(t for r in records for t in r.token_times)])
        self.returned.append(records)
        return records

    def close(self) -> None:
        self.closed = True
        self.journal.append("close")


class ContentTimedBackend(FakeInferenceBackend):
    """A FakeInferenceBackend whose ``generate`` call takes ``latency_s(prompts, call_no)`` seconds (call_no counts
    from 1 over warmup and measurement): a batch's content and the engine's warmth set its latency, as on a real
    engine, so warmup convergence can be tested against a known truth."""

    def __init__(self, latency_s: Callable[[list[str], int], float], **kwargs) -> None:
        super().__init__(**kwargs)
        self.latency_s = latency_s

    def generate(self, prompts: list[str]) -> list[GenerationRecord]:
        latency = self.latency_s(prompts, len(self.generate_calls) + 1)
        self.step_s = self.ttft_s = latency / self.output_tokens  # last token at start + latency
        return super().generate(prompts)


class FakeEnergySource:
    """Returns a configured energy figure, or None with a reason; refuses ``stop_tracking`` before ``start_tracking``."""

    def __init__(
        self,
        joules: float | None = 100.0,
        reason: str | None = None,
        name: str = "fake_energy",
        clock: FakeClock | None = None,
        warnings: list[str] | None = None,
        journal: list[str] | None = None,
        baseline_w: float | None = None,
    ) -> None:
        if joules is None and not reason:
            raise ValueError("a fake without joules needs the reason it has none")
        self.name = name
        self.joules = joules
        self.reason = reason
        self.clock = clock or FakeClock()
        self.warnings = list(warnings or [])
        self.journal = journal if journal is not None else []
        self.baseline_w = baseline_w
        self.start_calls = 0
        self.stop_calls = 0
        self.baseline_calls: list[float] = []
        self._t0: float | None = None

    def is_available(self) -> bool:
        return self.joules is not None

    def probe(self) -> None:
        pass

    def device_uuids(self) -> list[str]:
        return ["GPU-fake-0"]

    def idle_conditions(self) -> list[DeviceIdleState]:
        return [DeviceIdleState(device="0", uuid="GPU-fake-0", memory_used_mib=1024.0, power_limit_w=700.0)]

    def idle_baseline(self, duration_s: float) -> IdleBaseline | None:
        self.baseline_calls.append(duration_s)
        if self.baseline_w is None:
            return None
        return IdleBaseline(power_w=self.baseline_w, power_std_w=0.5, per_device_w={"0": self.baseline_w},
                            duration_s=duration_s, n_samples=10, measured_at=datetime.now(UTC),
                            device_uuids=["GPU-fake-0"], method="configured figure (fake)")


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
                             per_device_j={"0": self.joules}, warnings=list(self.warnings),
                             t_start=self.clock.now - duration, t_end=self.clock.now)


class FakeCounterDevice:
    """The CounterDevice protocol with a scripted energy curve on a FakeClock.

    ``joules_at(t)`` is the cumulative energy the device has used by time t (so power is its slope). The counter
    reads that value in millijoules, plus ``start_mj``, held between updates every ``update_period_s`` (0: continuous)
    and wrapped at ``wrap_mj`` when given; ``reset()`` makes it restart from zero as a driver reload would. ``sample``
    reports the curve's slope as power (None with ``reports_power=False``, as a RAPL package), and the temperature and
    clock-event reasons the test scripts. A counter read takes ``read_cost_s`` of clock time, as a real one does."""

    def __init__(self, clock: FakeClock, joules_at: Callable[[float], float], dev_id: str = "0",
                 uuid: str | None = "GPU-fake-0", update_period_s: float = 0.0, start_mj: float = 0.0,
                 wrap_mj: float | None = None, temperature_at: Callable[[float], float] = lambda t: 40.0,
                 reasons_at: Callable[[float], int] = lambda t: 0, persistence: bool | None = True,
                 others: list[int] | None = None, reports_power: bool = True, read_cost_s: float = 0.0) -> None:
        self.clock = clock
        self.joules_at = joules_at
        self.id = dev_id
        self.uuid = uuid
        self.update_period_s = update_period_s
        self.wrap_mj = wrap_mj
        self.temperature_at = temperature_at
        self.reasons_at = reasons_at
        self.persistence = persistence
        self.others = others or []
        self.reports_power = reports_power
        self.read_cost_s = read_cost_s
        self._offset_mj = start_mj
        self.reads = 0
        #: what idle_state reports besides identity and persistence; a test changes it to move the device's state
        self.state: dict = {"memory_used_mib": 1024.0, "power_limit_w": 700.0, "sm_clock_mhz": 1980,
                            "memory_clock_mhz": 2619}

    def _updated_at(self, t: float) -> float:
        if self.update_period_s <= 0:
            return t
        return (t // self.update_period_s) * self.update_period_s

    def energy_mj(self) -> float:
        self.reads += 1
        value = self.joules_at(self._updated_at(self.clock.now)) * 1000.0 + self._offset_mj
        self.clock.now += self.read_cost_s
        return value % self.wrap_mj if self.wrap_mj else value

    def reset(self) -> None:
        self._offset_mj = -self.joules_at(self._updated_at(self.clock.now)) * 1000.0

    def sample(self) -> DeviceSample:
        t, dt = self.clock.now, 1e-3
        power = (self.joules_at(t + dt) - self.joules_at(t)) / dt if self.reports_power else None
        return DeviceSample(power_w=power, temperature_c=self.temperature_at(t), sm_clock_mhz=1980,
                            memory_used_mib=1024.0, utilization_pct=50.0, clock_event_reasons=self.reasons_at(t))

    def other_processes(self) -> list[int] | None:
        return list(self.others)

    def persistence_mode(self) -> bool | None:
        return self.persistence

    def idle_state(self) -> DeviceIdleState:
        """The state a test scripts in ``self.state`` (memory in use, power limit, clocks), with this persistence."""
        return DeviceIdleState(device=self.id, uuid=self.uuid, persistence_mode=self.persistence, **self.state)


class FakeGpuLookup:
    """The GpuLookup seam (lem_runner.devices) over a scripted host: NVML index -> UUID, in PCI bus order. Paired with
    tests/gpu/test_gpu_devices.py, which binds through the real NvmlLookup."""

    def __init__(self, uuids: list[str]) -> None:
        self.uuids = list(uuids)

    def identify(self, entry: str) -> tuple[int, str]:
        if entry.isdigit():
            if int(entry) >= len(self.uuids):
                raise LookupError(f"Invalid Argument (index {entry} of {len(self.uuids)})")
            return int(entry), self.uuids[int(entry)]
        if entry not in self.uuids:
            raise LookupError("Not Found")
        return self.uuids.index(entry), entry


# ---------------------------------------------------------------------------------------------------------------------
# Controller-side fakes: FakeResultsRepository and FakeLauncher.
# ---------------------------------------------------------------------------------------------------------------------



class FakeResultsRepository:
    """The ResultsRepository protocol in memory: configs, results and errors live in dicts keyed by experiment
    folder. Folders are still created (exclusively) under ``root``, because a launcher needs a real exchange dir.
    ``load_result``/``load_error`` return only what a test put in with ``put_result``/``put_error``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.configs: dict[Path, ExperimentConfig] = {}
        self.results: dict[Path, ExperimentResult] = {}
        self.errors: dict[Path, RunError] = {}
        self.calls: list[tuple[str, object]] = []  # (method, name or folder), in call order
        self._created = 0

    def new_experiment_dir(self, name: str) -> Path:
        self.calls.append(("new_experiment_dir", name))
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            self._created += 1
            path = self.root / (name if self._created == 1 else f"{name}-{self._created}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue

    def save_config(self, exp_dir: Path, config: ExperimentConfig) -> None:
        self.calls.append(("save_config", exp_dir))
        self.configs[exp_dir] = config

    def load_result(self, exp_dir: Path) -> ExperimentResult | None:
        self.calls.append(("load_result", exp_dir))
        return self.results.get(exp_dir)

    def load_error(self, exp_dir: Path) -> RunError | None:
        self.calls.append(("load_error", exp_dir))
        return self.errors.get(exp_dir)

    def put_result(self, exp_dir: Path, result: ExperimentResult) -> None:
        self.results[exp_dir] = result

    def put_error(self, exp_dir: Path, error: RunError) -> None:
        self.errors[exp_dir] = error


#: what a FakeLauncher leaves in result.json when told to write garbage: a write cut off mid-object
TRUNCATED_RESULT = '{"experiment_id": "cut-off", "n_requests": 4, "ttft": {"n": 4, "mean_'


class FakeLauncher(Launcher):
    """The Launcher protocol without a process. ``launch`` records the spec, emits ``started`` and a ``progress``
    event (then ``done`` or ``error``), writes runner.log, and then, as configured:

    * ``result=`` an ExperimentResult: written as result.json (its experiment_id set to the request's), exit 0;
    * ``error=`` a RunError: written as error.json, exit 1;
    * ``garbage=True``: a truncated result.json, written non-atomically on purpose (a torn write), exit 0;
    * none of these: nothing written, exit -9 (killed).

    ``timed_out`` ("silence"/"wall") is reported in the outcome whatever was written; ``exit_code`` overrides the
    default code. ``before_exit(spec)`` runs after the files are written, for tests that act as the runner would.
    """

    name = "fake"

    def __init__(
        self,
        result: ExperimentResult | None = None,
        error: RunError | None = None,
        garbage: bool = False,
        timed_out: str | None = None,
        exit_code: int | None = None,
        before_exit: Callable[[LaunchSpec], None] | None = None,
    ) -> None:
        if (result is not None) + (error is not None) + bool(garbage) > 1:
            raise ValueError("a FakeLauncher writes at most one of result, error, garbage")
        self.result = result
        self.error = error
        self.garbage = garbage
        self.timed_out = timed_out
        default = 0 if result is not None or garbage else 1 if error is not None else -9
        self.exit_code = default if exit_code is None else exit_code
        self.before_exit = before_exit
        self.specs: list[LaunchSpec] = []
        self.emitted: list[ProgressEvent] = []

    def launch(self, spec: LaunchSpec, on_event) -> LaunchOutcome:
        self.specs.append(spec)
        out = spec.exchange_dir
        self._emit(on_event, ProgressEvent(event="started", message=spec.request.experiment_id))
        self._emit(on_event, ProgressEvent(event="progress", done=1, total=spec.request.config.n_prompts))
        log = atomic_write_text(out / LOG_FILE, f"fake runner for {spec.request.experiment_id}\n")
        if self.result is not None:
            result = self.result.model_copy(update={"experiment_id": spec.request.experiment_id})
            atomic_write_text(out / RESULT_FILE, result.model_dump_json(indent=2))
            self._emit(on_event, ProgressEvent(event="done", message=str(out / RESULT_FILE)))
        elif self.error is not None:
            atomic_write_text(out / ERROR_FILE, self.error.model_dump_json(indent=2))
            self._emit(on_event, ProgressEvent(event="error", message=self.error.message[:500]))
        elif self.garbage:
            (out / RESULT_FILE).write_text(TRUNCATED_RESULT, encoding="utf-8")  # deliberately torn, not atomic
        if self.before_exit is not None:
            self.before_exit(spec)
        return LaunchOutcome(exit_code=self.exit_code, log_file=log, timed_out=self.timed_out, where="fake launcher")

    def _emit(self, on_event, event: ProgressEvent) -> None:
        self.emitted.append(event)
        on_event(event)



class FakeGpu:
    """The GpuControl protocol (controller/llenergymeasure/gpustate) over a JSON state file, so a subprocess that
    changes the "GPU" and the test that checks it see one device. Limits look like an H100 SXM's: power 200–700 W
    (default 700), memory clock 2619 MHz, SM clocks 345–1980 MHz in 15 MHz steps.

    ``permission=False``: every set/reset raises NVML's NO_PERMISSION; ``fail_on``: that method name raises another
    NVML error. Every call that changes state is appended to ``calls`` in the file."""

    def __init__(self, state_file: str | Path, gpu_id: str = "0", uuid: str | None = None,
                 power_range_w: tuple[float, float] = (200.0, 700.0), default_power_w: float = 700.0,
                 memory_clocks: tuple[int, ...] = (2619,), sm_clocks: tuple[int, ...] = tuple(range(345, 1981, 15)),
                 permission: bool = True, fail_on: str | None = None) -> None:
        self.path = Path(state_file)
        self.id = gpu_id
        self.uuid = uuid or f"GPU-fake-{gpu_id}"
        self.power_range_w = power_range_w
        self.memory_clocks = list(memory_clocks)
        self.sm_clocks = list(sm_clocks)
        self.permission = permission
        self.fail_on = fail_on
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._save({"power_limit_w": default_power_w, "sm_lock": None, "mem_lock": None, "persistence": False,
                        "calls": []})

    def state(self) -> dict:
        import json

        return json.loads(self.path.read_text())

    def _save(self, state: dict) -> None:
        import json

        atomic_write_text(self.path, json.dumps(state))

    def _change(self, name: str, **update) -> None:
        from llenergymeasure.gpustate.device import GpuStateError

        if not self.permission:
            raise GpuStateError(f"NVML {name} on GPU {self.id}: Insufficient Permissions", permission=True)
        if self.fail_on == name:
            raise GpuStateError(f"NVML {name} on GPU {self.id}: Unknown Error")
        state = self.state()
        state.update(update)
        state["calls"].append(name)
        self._save(state)

    def power_limit_w(self) -> float:
        return self.state()["power_limit_w"]

    def power_limit_range_w(self) -> tuple[float, float]:
        return self.power_range_w

    def set_power_limit_w(self, watts: float) -> None:
        self._change("set_power_limit_w", power_limit_w=watts)

    def supported_memory_clocks_mhz(self) -> list[int]:
        return list(self.memory_clocks)

    def supported_sm_clocks_mhz(self, memory_clock_mhz: int) -> list[int]:
        return list(self.sm_clocks) if memory_clock_mhz in self.memory_clocks else []

    def lock_sm_clocks(self, lo_mhz: int, hi_mhz: int) -> None:
        self._change("lock_sm_clocks", sm_lock=[lo_mhz, hi_mhz])

    def reset_sm_clocks(self) -> None:
        self._change("reset_sm_clocks", sm_lock=None)

    def lock_memory_clocks(self, lo_mhz: int, hi_mhz: int) -> None:
        self._change("lock_memory_clocks", mem_lock=[lo_mhz, hi_mhz])

    def reset_memory_clocks(self) -> None:
        self._change("reset_memory_clocks", mem_lock=None)

    def persistence_mode(self) -> bool:
        return self.state()["persistence"]

    def set_persistence_mode(self, enabled: bool) -> None:
        self._change("set_persistence_mode", persistence=enabled)

    def sm_clock_mhz(self) -> int | None:
        lock = self.state()["sm_lock"]
        return lock[1] if lock else max(self.sm_clocks)

    def memory_clock_mhz(self) -> int | None:
        lock = self.state()["mem_lock"]
        return lock[1] if lock else max(self.memory_clocks)


def fake_gpu_opener(state_dir: str | Path, **kwargs) -> Callable[[str], FakeGpu]:
    """An opener (GPU id -> FakeGpu) whose devices keep their state in ``state_dir/gpu-<id>.json``."""
    return lambda gpu_id: FakeGpu(Path(state_dir) / f"gpu-{gpu_id}.json", gpu_id, **kwargs)


#: Field names of TensorRT-LLM's ``TorchLlmArgs`` (``tensorrt_llm/llmapi/llm_args.py``), a documented subset: the
#: engine is installable only from NVIDIA's index, in its GPU image, so the pass-through check
#: (lem_runner.backends.tensorrt.check.engine_arg_problems) is tested here against these names. Paired with
#: tests/gpu/test_tensorrt_gpu.py::test_fake_llm_arg_names_are_real, which checks each against the real model's fields.
FAKE_TORCH_LLM_ARG_NAMES = frozenset({
    "model", "tokenizer", "dtype", "tensor_parallel_size", "pipeline_parallel_size", "max_batch_size",
    "max_num_tokens", "max_seq_len", "kv_cache_config", "enable_chunked_prefill", "cuda_graph_config",
    "speculative_config", "enable_attention_dp", "max_beam_width", "trust_remote_code", "disable_overlap_scheduler",
    "moe_config", "attn_backend", "sampler_type", "torch_compile_config",
})
