"""Run one experiment: resolve its model, create its result folder, launch the runner, read back what it wrote."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from lem_runner.contract import ExperimentConfig, ExperimentResult, RunRequest
from lem_runner.contract.engine_args import CONFIG_PHASE
from pydantic import PrivateAttr

from llenergymeasure.config.host_checks import refuse_without_gpu
from llenergymeasure.errors import ConfigError, Interrupted, RunFailed, SetupError
from llenergymeasure.gpustate import operating_point
from llenergymeasure.gpustate.apply import Opener
from llenergymeasure.host.gpu_lock import gpu_locks, lock_ids
from llenergymeasure.launchers import Launcher, LaunchOutcome, LaunchSpec, Timeouts
from llenergymeasure.launchers.select import select_launcher
from llenergymeasure.models import resolve_model
from llenergymeasure.results import FileResultsRepository, ResultsRepository
from llenergymeasure.results.baselines import BaselineCache
from llenergymeasure.results.repository import CorruptResult
from llenergymeasure.serving import serving_workload


class RecordedResult(ExperimentResult):
    """An ExperimentResult that also knows the folder its result.json was written to (``result_dir``)."""

    _result_dir: Path | None = PrivateAttr(None)

    @property
    def result_dir(self) -> Path | None:
        return self._result_dir


def with_result_dir(result: ExperimentResult, result_dir: Path) -> RecordedResult:
    """The same record (not validated again), carrying its folder."""
    recorded = RecordedResult.model_construct(_fields_set=result.model_fields_set, **dict(result))
    recorded._result_dir = result_dir
    return recorded


def _prompts_file(config: ExperimentConfig) -> Path | None:
    if config.prompts.source != "jsonl":
        return None
    path = Path(config.prompts.path or "").expanduser()
    if not path.is_file():
        raise ConfigError(f"prompts.path: file '{config.prompts.path}' not found")
    return path.resolve()


def execute_experiment(
    config: ExperimentConfig,
    output: str | Path = "results",
    launcher: Launcher | None = None,
    on_event=None,
    timeouts: Timeouts = Timeouts(),
    repository: ResultsRepository | None = None,
    isolated: bool = False,
    baselines: BaselineCache | None = None,
    gpu_control: Opener | None = None,
    source: str = "config",
    fidelity=None,
    reference_file: Path | None = None,
) -> tuple[ExperimentResult, Path]:
    """Measure ``config``; return its result and its folder. Raises ConfigError before anything runs, RunFailed if
    the runner produced no valid result (its error.json and runner.log stay in the folder). A ``gpu:`` operating point
    is set on the host GPUs (``gpu_control`` opens them; NVML by default) while the runner runs, and restored.
    ``source`` names the config in a refusal (its file, for `lem run`); ``fidelity``: what a study with a
    reference tells the run (RunRequest.fidelity), ``reference_file`` the reference's outputs placed in its folder."""
    launcher = launcher or select_launcher(config, isolated=isolated)
    repo = repository or FileResultsRepository(output)
    baselines = baselines or BaselineCache()
    # a scheduler's allocation (Slurm) is the GPU lock of a job; lem's own lock guards this machine's GPUs only
    # (and an idle baseline cached here says nothing about a node's GPUs)
    remote = launcher.allocates_devices
    gpu_ids = [] if remote else lock_ids(config)
    if config.gpu.requested and not gpu_ids:
        raise SetupError("gpu: the run asks for a power limit, locked clocks or persistence mode, but no NVIDIA GPU "
                         "is visible on this host")
    locks = nullcontext() if remote else gpu_locks(config)
    with (locks,  # another lem measuring on these GPUs: wait (or fail/skip, per the lock policy)
          operating_point(config.gpu, gpu_ids, gpu_control) as gpu_settings):
        if not remote:  # after a dead lem's GPU journal was restored, before a result folder exists
            refuse_without_gpu(config, source)
        spec = prepare_run(config, repo, None if remote else baselines, timeouts, gpu_settings, fidelity,
                           reference_file)
        phase = PhaseTracker(on_event or (lambda _e: None))
        try:
            outcome = launcher.launch(spec, phase)
        except Interrupted as exc:
            raise Interrupted(_interrupted_message(exc, repo, spec.exchange_dir)) from None
    if outcome.timed_out:
        record_timeout(spec.exchange_dir, outcome, timeouts, phase.phase)
    return collect_run(spec.exchange_dir, config, outcome, repo, baselines), spec.exchange_dir


class PhaseTracker:
    """An event sink that passes events on and remembers the phase the runner was in (from its last event), so a
    run the controller had to stop can say where it was."""

    #: the phase a runner is in after each kind of event
    AFTER = {"started": "load", "model_loaded": "baseline", "baseline": "warmup", "warmup": "warmup",
             "progress": "measure", "measured": "analyse", "done": "write"}

    def __init__(self, sink) -> None:
        self.sink = sink
        self.phase = "request"

    def __call__(self, event) -> None:
        self.phase = self.AFTER.get(event.event, self.phase)
        self.sink(event)


def timeout_message(outcome: LaunchOutcome, timeouts: Timeouts) -> str:
    """'timeout after 6 s (--timeout)' or 'silent for 900 s (--silence-timeout)': why the controller stopped it."""
    if outcome.timed_out == "wall":
        return f"timeout after {timeouts.wall_s:g} s (wall-clock limit)"
    return f"silent for {timeouts.silence_s:g} s (no output from the runner)"


def record_timeout(exp_dir: Path, outcome: LaunchOutcome, timeouts: Timeouts, phase: str) -> None:
    """error.json for a run the controller stopped on a timeout (the runner, killed, wrote none, or wrote that it
    was interrupted): `results list/show` then say it failed and why, not "incomplete"."""
    from lem_runner.contract import ERROR_FILE, RunError
    from lem_runner.contract.atomic import atomic_write_text

    path = exp_dir / ERROR_FILE
    try:
        previous = RunError.model_validate_json(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        previous = None
    if previous is not None and previous.status == "failed":
        return  # the runner's own failure came first; keep it
    error = RunError(experiment_id=exp_dir.name, error_type="Timeout", message=timeout_message(outcome, timeouts),
                     phase=previous.phase if previous is not None else phase)
    atomic_write_text(path, error.model_dump_json(indent=2))


def prepare_run(config: ExperimentConfig, repo: ResultsRepository, baselines: BaselineCache | None,
                timeouts: Timeouts = Timeouts(), gpu_settings=(), fidelity=None,
                reference_file: Path | None = None) -> LaunchSpec:
    """The run's folder with its config, and what a launcher needs to start it. ``baselines`` None: no cached idle
    baseline (a run on another machine measures its own); ``gpu_settings``: the operating point applied for it."""
    model = resolve_model(config)
    prompts = _prompts_file(config)
    exp_dir = repo.new_experiment_dir(config.experiment_name)
    repo.save_config(exp_dir, config)
    if reference_file is not None:  # a study's compared run reads the reference's outputs from its own folder
        _place_reference(reference_file, exp_dir)
    request = RunRequest(experiment_id=exp_dir.name, config=config, model_path=model.host_path,
                         cached_baselines=baselines.get(config) if baselines is not None else [],
                         gpu_settings=list(gpu_settings), serving_workload=serving_workload(config),
                         fidelity=fidelity)
    return LaunchSpec(exchange_dir=exp_dir, request=request, model=model, prompts_file=prompts, timeouts=timeouts)


def _place_reference(source: Path, run_dir: Path) -> None:
    """The reference's outputs into a compared run's folder (COMPARED_FILE): a hard link (no second copy on disk),
    else a copy."""
    import os
    import shutil

    from lem_runner.contract.quality import COMPARED_FILE

    try:
        os.link(source, run_dir / COMPARED_FILE)
    except OSError:
        shutil.copyfile(source, run_dir / COMPARED_FILE)


def collect_run(exp_dir: Path, config: ExperimentConfig, outcome: LaunchOutcome, repo: ResultsRepository,
                baselines: BaselineCache | None = None) -> ExperimentResult:
    """The result the runner wrote in the run's folder, or RunFailed saying why there is none."""
    try:
        result = repo.load_result(exp_dir)
        error = repo.load_error(exp_dir)
    except CorruptResult as exc:
        raise RunFailed(str(exc), log_file=str(outcome.log_file), reason="corrupt_result") from None
    if outcome.timed_out:
        said = error.message if error is not None and error.error_type == "Timeout" else \
            f"the {outcome.timed_out} timeout"
        raise RunFailed(
            f"runner stopped: {said} ({outcome.where}); log: {outcome.log_file}",
            log_file=str(outcome.log_file),
            reason="timeout" if outcome.timed_out == "wall" else outcome.timed_out,
        )
    state = outcome.scheduler_state
    if result is not None and outcome.exit_code == 0 and state in (None, "COMPLETED"):
        if baselines is not None:
            baselines.put(config, result)
        return result
    if state not in (None, "COMPLETED", "FAILED"):  # Slurm ended the job: TIMEOUT, CANCELLED, OUT_OF_MEMORY, ...
        raise RunFailed(
            f"Slurm job {outcome.where} ended {state}{_last_words(outcome.last_error)}; log: {outcome.log_file}",
            log_file=str(outcome.log_file), reason="timeout" if state == "TIMEOUT" else state.lower(),
        )
    if error is not None and error.phase == CONFIG_PHASE:  # the engine refused a setting before loading anything
        raise ConfigError(f"{(error.message.splitlines() or ['(no message)'])[0]} (checked by the engine in the "
                          f"runner; details: {exp_dir / 'error.json'})")
    if error is not None:
        raise RunFailed(
            f"run failed during {error.phase}: {(error.message.splitlines() or ['(no message)'])[0]} "
            f"(details: {exp_dir / 'error.json'})",
            error_file=str(exp_dir / "error.json"),
            log_file=str(outcome.log_file),
            reason="runner_error",
        )
    wrote = "a result it did not stand by" if result is not None else "no result"
    raise RunFailed(
        f"runner {_how_it_ended(outcome.exit_code)} and wrote {wrote} ({outcome.where})"
        f"{_last_words(getattr(outcome, 'last_error', None))}; log: {outcome.log_file}",
        log_file=str(outcome.log_file),
    )


def _interrupted_message(exc: Interrupted, repo: ResultsRepository, exp_dir: Path) -> str:
    """What the runner said it was doing when stopped (from its error.json), and where the folder is."""
    try:
        error = repo.load_error(exp_dir)
    except CorruptResult:
        error = None
    said = f": runner {error.message}" if error is not None and error.status == "interrupted" else ""
    return f"{exc}{said}; {exp_dir} is kept, marked interrupted (no result)"


def _how_it_ended(code: int) -> str:
    """'exited with code 1', or the signal that killed it: a local process reports -N, a container 128+N."""
    import signal

    number = -code if code < 0 else code - 128 if code in (128 + signal.SIGKILL, 128 + signal.SIGSEGV) else None
    if number is None:
        return f"exited with code {code}"
    name = signal.Signals(number).name
    why = "; out of memory? the OOM killer sends SIGKILL" if number == signal.SIGKILL else ""
    return f"was killed by {name} (exit code {code}{why})"


def _last_words(message: str | None) -> str:
    """The runner's last error event, when it could not write error.json (a full disk): the cause, kept anyway."""
    return f": {message}" if message else ""


__all__ = ["PhaseTracker", "RecordedResult", "collect_run", "record_timeout", "execute_experiment", "prepare_run", "with_result_dir"]
