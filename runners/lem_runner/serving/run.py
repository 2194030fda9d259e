"""One serving experiment: start the backend's server (or take the one an engine session kept from its last run, or
use the user's endpoint), wait for its health route, take the idle baseline, send warmup requests, then the load
inside the energy window; derive every figure and write requests.parquet beside result.json. The server's start-up
is outside the window and reported; the server is stopped on every path (by its holder: after a failed run, at the
end of the session or single run, on Ctrl-C and SIGTERM)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lem_runner.assemble import energy_result
from lem_runner.backends.base import library_versions
from lem_runner.contract.environment import EnvironmentInfo
from lem_runner.contract.fingerprint import measurement_config_hash
from lem_runner.contract.protocol import ProgressEvent, RunRequest
from lem_runner.contract.result import EngineUse, ExperimentResult, RunTotals, WarmupResult
from lem_runner.energy.base import EnergySource
from lem_runner.energy.timeseries import FILE_NAME as TIMESERIES_FILE
from lem_runner.energy.timeseries import write_timeseries
from lem_runner.energy.tracker import integrate_power
from lem_runner.measurement.baseline import obtain_baseline
from lem_runner.measurement.host_load import contention_message, host_load
from lem_runner.measurement.host_load import snapshot as load_snapshot
from lem_runner.measurement.latency import ITL_DEFINITION, TPOT_DEFINITION
from lem_runner.measurement.operating_point import observe
from lem_runner.measurement.quality import Flag, counter_vs_integrated, quality_flags
from lem_runner.measurement.windows import span_energy_per_device, window_figures
from lem_runner.prompts import load_prompts
from lem_runner.serving.cache_metrics import cache_figures, read_counters
from lem_runner.serving.capacity import ProbeRun, search
from lem_runner.serving.client import LoadSpec, repeated_prompts, run_load
from lem_runner.serving.conversations import Templater, conversation_figures, plan_conversations, run_conversations
from lem_runner.serving.figures import STEADY_DEFINITION, serving_figures, steady_spans
from lem_runner.serving.lifecycle import (
    LOG_FILE,
    WARMUP_METHOD,
    ManagedServer,
    ServerError,
    free_port,
    served_settings,
    settle,
    warm_up,
)
from lem_runner.serving.planned import PlannedRequest
from lem_runner.serving.records import FILE_NAME as REQUESTS_FILE
from lem_runner.serving.records import write_requests
from lem_runner.serving.schedule import plan_requests, vocab_size
from lem_runner.serving.servers import SERVED_NAME, server_command
from lem_runner.serving.window import piece_length, serving_flags, total_window
from lem_runner.session import HeldEngine

Emit = Callable[[ProgressEvent], None]
LATENCY_METHOD = ("client side, in lem's load generator: submission (just before the HTTP request is sent) to each "
                  "streamed chunk's arrival; TTFT includes queueing in the server")


def torch_cuda() -> tuple[bool, str | None]:
    """(torch sees a CUDA GPU, torch's CUDA version); (False, None) where torch is not installed."""
    try:
        import torch
    except ImportError:
        return False, None
    return (True, torch.version.cuda) if torch.cuda.is_available() else (False, None)


def device_kind(cfg, cuda: Callable[[], tuple[bool, str | None]] = torch_cuda) -> tuple[str, str | None]:
    """Where the served model runs ('cuda' or 'cpu') and the CUDA version when known: the backend's own rule where
    its settings decide it (BackendSpec.device_kind_of), else ``device``, ``auto`` being a GPU when one is visible
    (``cuda``: the host's answer, torch's by default)."""
    kind = cfg.spec.device_kind_of(cfg)
    if cfg.device == "cpu" or kind == "cpu":
        return "cpu", None
    visible, version = cuda()
    if visible:
        return "cuda", version
    return ("cuda", None) if "cuda" in (cfg.device, kind) else ("cpu", None)


def _sampling(cfg) -> dict:
    d = cfg.decoding
    # OpenAI's presence/frequency_penalty; repetition_penalty is vLLM's and trtllm-serve's extra request parameter
    penalties = d.penalties()
    if not d.do_sample:
        return {"temperature": 0.0, **penalties}
    out = {"temperature": d.temperature, "top_p": d.top_p, "seed": cfg.seed, **penalties}
    if d.top_k:
        out["top_k"] = d.top_k
    if d.min_p:
        out["min_p"] = d.min_p
    return out


def run_serving(request: RunRequest, energy_for: Callable[[str], EnergySource],
                environment_for: Callable[[dict, str, str | None], EnvironmentInfo], emit: Emit, phase,
                out_dir: Path, held: HeldEngine, gpu_indices: list[int] | None = None) -> ExperimentResult:
    """Measure one serving experiment on ``held``'s server (kept from an earlier run of the engine session, or
    started now and kept there: ``held.close()`` stops it). ``gpu_indices``: the config's device indices as written,
    recorded beside each device's energy. The run's folder gets the server's log from this run's start to its end."""
    cfg, s = request.config, request.config.serving
    start_time = datetime.now(UTC)
    kind = device_kind(cfg)[0]
    phase.name = "load"
    if s.endpoint is not None:
        return _measure(request, energy_for, environment_for, emit, phase, out_dir, start_time, None, None, None,
                        gpu_indices)
    log_path = (held.scratch or out_dir) / LOG_FILE

    def start() -> ManagedServer:
        port = free_port()
        return ManagedServer(server_command(cfg, request.model_path, port, kind == "cpu"), port, log_path)

    mark = held.server.log_mark() if held.server is not None else 0  # before the hand-over: its reset is logged
    server, fresh = held.server_for(cfg, start)
    mark = 0 if fresh else mark
    start_s = None
    try:
        if fresh:
            server.start()
            start_s = server.wait_ready(s.server_start_timeout_s)
            held.started(start_s)
            emit(ProgressEvent(event="model_loaded", message=f"server ready in {start_s:.1f} s",
                               data={"seconds": start_s}))
        else:
            emit(ProgressEvent(event="model_loaded", message=f"server kept from the session's last run (pid "
                               f"{server.pid}, {held.runs_served} run(s) served)", data={"seconds": 0.0}))
        return _measure(request, energy_for, environment_for, emit, phase, out_dir, start_time, server, start_s,
                        held.use(fresh), gpu_indices)
    finally:
        if held.scratch is not None:  # a kept server logs to the session folder: this run's share goes beside it
            with contextlib.suppress(OSError):
                out_dir.mkdir(parents=True, exist_ok=True)
                (out_dir / LOG_FILE).write_bytes(server.log_since(mark))


def _at_load(cfg, load: float):
    """``cfg`` with serving.rate (open loop) or serving.concurrency (closed loop) set to a capacity probe's load."""
    s = cfg.serving
    field = {"concurrency": int(load)} if s.arrival == "concurrency" else {"rate": load}
    return cfg.model_copy(update={"serving": s.model_copy(update=field)})


def _measure(request: RunRequest, energy_for, environment_for, emit: Emit, phase, out_dir: Path,
             start_time: datetime, server: ManagedServer | None, start_s: float | None, engine: EngineUse | None,
             gpu_indices: list[int] | None) -> ExperimentResult:
    """The run itself, on a ready server (None: the user's endpoint): baseline, warmup, the load in the window (a
    capacity search: one load per probe, each in its own window, on the same server after one baseline and
    warmup)."""
    cfg, s = request.config, request.config.serving
    kind, cuda_version = device_kind(cfg)
    base_url = server.base_url if server else s.endpoint
    alive = server.alive if server else (lambda: True)

    prompts = load_prompts(cfg.prompts, min(cfg.n_prompts, 1000), cfg.seed, request.prompts_path)
    vocab = vocab_size(request.model_path)
    cap = s.capacity
    first = _at_load(cfg, cap.bracket[0]) if cap is not None else cfg
    convs = templater = None
    if s.conversations is not None:  # multi-turn: the plan is each conversation's first turn (for the warmup)
        recorded = [i.user_turns for i in request.serving_workload or [] if i.user_turns]
        convs = plan_conversations(s.conversations, s.arrival, s.rate, s.burstiness, cfg.max_output_tokens,
                                   cfg.seed if s.seed is None else s.seed, recorded or None, s.duration_s)
        templater = Templater(request.model_path, chat_route=server is not None and server.command.chat_route)
        plan = [PlannedRequest(c.id, None, c.users[0] if templater.chat_route else templater([("user", c.users[0])]),
                               c.max_tokens[0]) for c in convs]
    else:
        plan = plan_requests(first, prompts, request.serving_workload, vocab)
    spec = _spec(first, base_url, server)
    energy = energy_for(kind)

    phase.name = "baseline"
    energy.probe()
    baseline, baseline_reason = obtain_baseline(cfg.energy.baseline, energy, request.cached_baselines,
                                                datetime.now(UTC))
    phase.name = "warmup"
    plan_warnings = [w for w in [repeated_prompts(plan)] if w]
    plan_warnings += warm_up(spec, plan, s.warmup_requests, server, alive)
    context = dict(request=request, energy=energy, environment_for=environment_for, out_dir=out_dir,
                   start_time=start_time, server=server, start_s=start_s, engine=engine, gpu_indices=gpu_indices,
                   baseline=baseline, baseline_reason=baseline_reason, base_url=base_url, kind=kind,
                   cuda_version=cuda_version)
    if cap is None:
        phase.name = "measure"
        loaded = _load(spec, plan, energy, alive, emit, s.duration_s is None, convs, templater, server)
        phase.name = "analyse"
        return _assemble(cfg, plan_warnings, loaded, **context)

    def probe(index: int, load: float):
        probe_cfg = _at_load(cfg, load)
        probe_plan = plan if index == 0 else plan_requests(probe_cfg, prompts, request.serving_workload, vocab)
        if index and server is not None:  # idle, its caches emptied: each probe starts as the first did
            plan_warnings.extend(settle(server))
        phase.name = "measure"
        emit(ProgressEvent(event="progress", message=f"capacity probe {index + 1}: {s.arrival} at {load:g} "
                           f"{'clients' if s.arrival == 'concurrency' else 'req/s'}"))
        loaded = _load(_spec(probe_cfg, base_url, server), probe_plan, energy, alive, emit, s.duration_s is None,
                       server=server)
        phase.name = "analyse"
        figures, _ = _figures(probe_cfg, loaded, baseline.power_w if baseline is not None else None)
        name = f"capacity-probe-{index}-{REQUESTS_FILE}"
        write_requests(loaded.records, out_dir / name, min((r.submit for r in loaded.records), default=loaded.t0))
        if server is not None and server.died():
            raise ServerError(f"{server.died()}; capacity probe {index} records kept in {name}")
        return ProbeRun(figures, (probe_cfg, loaded), name)

    found, runs = search(cap, probe)
    probe_cfg, loaded = runs[found.headline_probe].payload
    result = _assemble(probe_cfg, plan_warnings, loaded, **context)
    result.serving.capacity = found
    if found.found != "bracketed":
        result.warnings.append(f"capacity search: {found.stop_reason}: the capacity is "
                               + ("at least the bracket's high end" if found.found == "at_least_max" else
                                  "below the bracket's low end (null)") + "; widen serving.capacity's bracket")
    return result


def _spec(cfg, base_url: str, server: ManagedServer | None) -> LoadSpec:
    s = cfg.serving
    clients = s.concurrency if s.arrival == "concurrency" else None
    return LoadSpec(base_url, SERVED_NAME if server else _served_name(base_url, cfg.model), clients, s.duration_s,
                    s.request_timeout_s, cfg.force_output_length, _sampling(cfg),
                    chat=server is not None and server.command.chat_route)


@dataclass
class _Loaded:
    """One load inside its energy window: the records, the load's start, the reading and the /proc snapshots (and,
    multi-turn, the conversations sent and their chat templater)."""

    plan: list
    records: list
    t0: float
    reading: object
    loads: list
    end_time: datetime
    convs: list | None = None
    templater: object = None
    cache: tuple = (None, None)  # the server's prefix-cache counters just before and just after the window


def _load(spec: LoadSpec, plan, energy, alive, emit: Emit, counted: bool, convs=None, templater=None,
          server: ManagedServer | None = None) -> _Loaded:
    """Send ``plan`` with the energy window opened and closed by the load generator tight around the load; the
    server's prefix-cache counters are read just outside the window's two edges."""
    done = [0]
    n_sends = sum(len(c.users) for c in convs) if convs is not None else len(plan)

    def on_done(_r) -> None:
        done[0] += 1
        if done[0] % 10 == 0:
            emit(ProgressEvent(event="progress", done=done[0], total=n_sends if counted else None))

    window: list = []
    loads: list = []  # /proc snapshots at the window's edges (host load; the server lem started counts as the run's)

    def open_window() -> None:
        loads.append(load_snapshot())
        energy.start_tracking()
        window.append(None)

    def close_window() -> None:
        window[-1] = energy.stop_tracking()
        loads.append(load_snapshot())

    names = server.command.prefix_cache_metrics if server is not None else None
    before = read_counters(server, names)
    try:
        if convs is not None:
            records, t0 = run_conversations(spec, convs, templater, alive=alive, on_done=on_done,
                                            on_start=open_window, on_end=close_window)
        else:
            records, t0 = run_load(spec, plan, alive=alive, on_done=on_done, on_start=open_window,
                                   on_end=close_window)
    except BaseException:
        if window and window[-1] is None:
            with contextlib.suppress(Exception):
                energy.stop_tracking()
        raise
    reading = window[-1] if window and window[-1] is not None else energy.stop_tracking()
    after = read_counters(server, names)
    return _Loaded(plan, records, t0, reading, loads, datetime.now(UTC), convs, templater, (before, after))


def _figures(cfg, loaded: _Loaded, baseline_w: float | None):
    """The serving figures of one load, and the energy-between function (None when the reading has no series)."""
    s, reading, records = cfg.serving, loaded.reading, loaded.records
    sub_span = reading.sub_span_reason() if reading.total_j is not None else None
    between = (reading.energy_between if reading.total_j is not None and reading.tracks is not None
               and sub_span is None else None)
    reason = reading.unavailable_reason or sub_span or (
        None if between else "the energy source gives window totals only: no energy per request, idle or "
        "steady-state figure")
    plan = loaded.plan
    offered = s.rate if s.arrival in ("constant", "poisson", "gamma") and loaded.convs is None else None
    if s.arrival == "trace" and len(plan) > 1 and plan[-1].arrival_s:
        offered = (len(plan) - 1) / plan[-1].arrival_s
    clients = s.concurrency if s.arrival == "concurrency" else None
    figures = serving_figures(records, arrival=s.arrival, offered_rate=offered, clients=clients, slo=s.slo,
                              energy_between=between, energy_reason=reason, baseline_w=baseline_w,
                              step_s=piece_length(reading, records))
    return figures, (between, reason)


def _assemble(cfg, plan_warnings: list[str], loaded: _Loaded, *, request: RunRequest, energy, environment_for,
              out_dir: Path, start_time: datetime, server: ManagedServer | None, start_s: float | None,
              engine: EngineUse | None, gpu_indices: list[int] | None, baseline, baseline_reason, base_url: str,
              kind: str, cuda_version: str | None) -> ExperimentResult:
    """The run's result from one load (a capacity search: the headline probe's); ``cfg`` carries that load's rate
    or clients, the result's config is the request's."""
    s = cfg.serving
    records, t0, reading, loads, end_time = loaded.records, loaded.t0, loaded.reading, loaded.loads, loaded.end_time
    died = server.died() if server else None
    baseline_w = baseline.power_w if baseline is not None else None
    figures, (between, reason) = _figures(cfg, loaded, baseline_w)
    figures.server = figures.server or (server.command.name if server else f"endpoint {s.endpoint}")
    figures.server_start_s = start_s
    cache = cache_figures(*loaded.cache, server.command.prefix_cache_metrics if server else None,
                          server.command.name if server else None)
    figures.prefix_cache_hit_rate, figures.prefix_cache_queried_tokens = cache.hit_rate, cache.queried_tokens
    figures.prefix_cache_hit_tokens, figures.prefix_cache_source = cache.hit_tokens, cache.source
    figures.prefix_cache_unavailable_reason = cache.reason
    if loaded.convs is not None:
        figures.conversations = conversation_figures(records, loaded.templater.format)  # after serving_figures' energy_j
    figures.server_log = LOG_FILE if server else None
    origin = min((r.submit for r in records), default=t0)
    write_requests(records, out_dir / REQUESTS_FILE, origin)
    if died:
        raise ServerError(f"{died}; {len(records)} request records kept in {REQUESTS_FILE}")
    if records and figures.n_ok == 0:
        raise ServerError(f"no request succeeded ({figures.error_examples[:1]}); records in {REQUESTS_FILE}")

    lo, hi = origin, origin + figures.duration_s
    ok_out = sum(r.output_tokens for r in records if r.ok)
    windows = {"total": total_window(reading, between, lo, hi, ok_out, baseline_w)}
    steady = steady_spans(records)
    if steady:
        windows["steady_state"] = window_figures(steady, figures.steady_state_output_tokens or 0,
                                                 figures.steady_state_energy_j, baseline_w, lo, STEADY_DEFINITION,
                                                 energy_reason=None if between else reason)
    methodology = "steady_state" if cfg.window.mode == "steady_state" and "steady_state" in windows else "total"
    head = windows[methodology]

    per_device = [integrate_power(reading.samples, d, reading.t_start, reading.t_end)
                  for d in (reading.per_device_j or {})]
    integrated = sum(per_device) if per_device and None not in per_device else None  # type: ignore[arg-type]
    rel_diff = counter_vs_integrated(reading.total_j, integrated)
    head_per_device = (span_energy_per_device(reading, [(lo, hi)] if methodology == "total" else steady)
                       if between else None)
    flags = quality_flags(reading, hi - lo, rel_diff, headline=head)
    flags += serving_flags(figures, windows, flags, s.request_timeout_s)
    # a user's endpoint on this host is another process by /proc's account: its CPU would read as contention
    load = host_load(loads[0], loads[-1]) if server is not None and len(loads) == 2 else None
    if load is not None and load.contended:
        flags.append(Flag("cpu_contention", contention_message(load)))
    operating_point, drift = observe(reading.samples, reading.t_start, reading.t_end, request.gpu_settings)
    flags += drift
    timeseries = None
    if cfg.energy.timeseries and reading.samples:
        write_timeseries(reading.samples, out_dir / TIMESERIES_FILE, lo)
        timeseries = TIMESERIES_FILE
    energy_record = energy_result(reading, getattr(energy, "selected_because", None), baseline, baseline_reason, head,
                                  head_per_device, integrated, rel_diff,
                                  sum(1 for r in reading.samples if lo <= r.t <= hi), timeseries,
                                  (gpu_indices or cfg.devices) if kind == "cuda" else None)
    warnings = list(reading.warnings) + [f.message for f in flags] + plan_warnings
    if figures.n_errors or figures.n_timeouts:
        warnings.append(f"{figures.n_errors} request(s) failed and {figures.n_timeouts} timed out (counted in "
                        "serving, kept in requests.parquet, left out of the latencies)")
    in_tokens = sum(r.input_tokens or 0 for r in records if r.ok)
    libraries = library_versions([*cfg.spec.libraries, "aiohttp"])
    settings = served_settings(base_url, server)  # what the server ran, read back from it
    return ExperimentResult(
        experiment_id=request.experiment_id, measurement_config_hash=measurement_config_hash(request.config),
        config=request.config,
        model_path=request.model_path, measurement_methodology=methodology,
        whole_run=RunTotals(n_requests=len(records), input_tokens=in_tokens, output_tokens=ok_out,
                            total_tokens=in_tokens + ok_out, duration_s=hi - lo),
        output_tokens=head.output_tokens,
        inference_time_s=head.duration_s, output_tokens_per_second=head.tokens_per_second,
        total_energy_j=head.energy_j, adjusted_energy_j=head.adjusted_energy_j,
        energy_per_token_j=head.energy_per_token_j, adjusted_energy_per_token_j=head.adjusted_energy_per_token_j,
        windows=windows,
        ttft=figures.ttft, itl=figures.itl, tpot=figures.tpot,
        latency_definitions={"itl": ITL_DEFINITION, "tpot": TPOT_DEFINITION},
        latency_method=LATENCY_METHOD, energy=energy_record, host_load=load,
        model_load_s=start_s or 0.0, engine=engine,
        warmup=WarmupResult(mode="fixed", batches=s.warmup_requests, stop_reason=f"{s.warmup_requests} warmup "
                            "request(s) (serving.warmup_requests)", method=WARMUP_METHOD),
        batch_size=server.command.batch_size if server else None,  # a user's endpoint: its batching is unknown
        batch_knob=cfg.spec.batch_knob,
        backend_details={"scenario": "serving", "server": figures.server, "device": kind,
                         "dtype": settings["resolved"].get("dtype", cfg.dtype), "requests_file": REQUESTS_FILE,
                         **(server.command.details if server else {})},
        engine_settings=settings,
        serving=figures, operating_point=operating_point, warnings=warnings, quality_flags=[f.code for f in flags],
        environment=environment_for(libraries, kind, cuda_version), start_time=start_time, end_time=end_time)


def _served_name(base_url: str, fallback: str) -> str:
    """The first model a user's endpoint lists (GET /v1/models), else the config's model."""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=5) as resp:
            data = json.loads(resp.read())
        return data["data"][0]["id"]
    except Exception:  # an endpoint without /v1/models takes the config's name
        return fallback


__all__ = ["run_serving"]
