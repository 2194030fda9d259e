"""What a run measures, as one interface: ``SCENARIOS[config.scenario].run(context)``, in the spirit of
optimum-benchmark's ``scenario.run(backend)``. ``offline`` pushes the prompt set through the backend's engine
(lem_runner.measure); ``serving`` drives the backend's server with the load generator (lem_runner.serving.run).
The runner's entry point (``__main__``) builds one :class:`RunContext` and hands it to the config's scenario; both
scenarios end in :func:`finish`, the shared last step of the result (the config as the user wrote it, the engine's
use, the engine handed back to the session)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lem_runner.contract import ExperimentConfig, ExperimentResult, RunRequest
from lem_runner.contract.engine_args import EngineArgumentError


@dataclass
class RunContext:
    """Everything a scenario needs from the entry point: the request (its config as written), the config the run
    uses (devices re-bound to what the engine sees), the engine session's holder and the measuring hooks."""

    request: RunRequest
    config: ExperimentConfig
    held: Any  # lem_runner.session.HeldEngine
    emit: Callable[[Any], None]
    phase: Any  # lem_runner.measure.Phase: the phase an error is reported in
    out_dir: Path
    #: the energy source for a device kind ('cuda', 'cpu'); ``checked``: also check CUDA sees the bound GPUs
    energy_for: Callable[[str, bool], Any]
    #: the environment record for (libraries, device kind, CUDA version)
    environment_for: Callable[[dict, str, str | None], Any]


@runtime_checkable
class Scenario(Protocol):
    name: str

    def run(self, ctx: RunContext) -> ExperimentResult: ...


def finish(ctx: RunContext, result: ExperimentResult, **update: Any) -> ExperimentResult:
    """The shared last step: the result carries the config as the user wrote it (not the re-bound devices), and the
    engine (or server) goes back to the session for the next run."""
    result = result.model_copy(update={"config": ctx.request.config, **update})
    ctx.held.served()
    return result


class Offline:
    name = "offline"

    def run(self, ctx: RunContext) -> ExperimentResult:
        from lem_runner.backends import create_backend
        from lem_runner.contract.quality import quality_problems
        from lem_runner.contract.task import task_problems
        from lem_runner.measure import run_measurement

        cfg = ctx.config
        problems = (quality_problems(cfg.quality, cfg.backend, cfg.scenario, cfg.decoding.do_sample)
                    + task_problems(_task(ctx), cfg.backend, cfg.scenario))
        if problems:  # before loading: a config error (exit 2), as `lem config validate` says
            raise EngineArgumentError("; ".join(problems))
        seen: list = []  # the Observation: the requests' tokens, for the quality figures
        fresh = ctx.held.backend is None  # the backend engine_for hands over was loaded before, or is new
        backend = ctx.held.engine_for(ctx.config, lambda: create_backend(ctx.config, ctx.request.model_path))
        result = run_measurement(
            ctx.request, backend,
            energy_for=lambda loaded: ctx.energy_for(loaded.device_kind, True),
            environment_for=lambda loaded: ctx.environment_for(loaded.libraries, loaded.device_kind,
                                                               loaded.cuda_version),
            emit=ctx.emit, phase=ctx.phase, prompts_path=ctx.request.prompts_path, out_dir=ctx.out_dir,
            observed=seen.append,
        )
        if cfg.quality.reference or cfg.quality.perplexity:  # after the energy window closed, as the task below
            from lem_runner.quality.run import with_fidelity_and_perplexity

            ctx.phase.name = "quality"
            result = with_fidelity_and_perplexity(ctx.request, ctx.held.backend, result, seen[0].records, ctx.out_dir)
        if ctx.config.quality.task is not None:  # after the energy window closed: never in a measured figure
            result = _with_task_score(ctx, ctx.held.backend, result)  # the engine itself, not the session's wrapper
        return finish(ctx, result, engine=ctx.held.use(fresh))


def _task(ctx: RunContext):
    """The config's task, read from where the launcher put its file (request.task_path: a container's copy)."""
    task = ctx.config.quality.task
    if task is None or ctx.request.task_path is None:
        return task
    return task.model_copy(update={"path": ctx.request.task_path})


def _with_task_score(ctx: RunContext, backend, result: ExperimentResult) -> ExperimentResult:
    """The task's accuracy on the engine just measured, in result.quality.task."""
    from lem_runner.contract.quality import QualityFigures
    from lem_runner.task import score_task

    ctx.phase.name = "task"
    score = score_task(_task(ctx), backend.loglikelihood)
    quality = result.quality or QualityFigures()
    return result.model_copy(update={"quality": quality.model_copy(update={"task": score})})


class Serving:
    name = "serving"

    def run(self, ctx: RunContext) -> ExperimentResult:
        from lem_runner.serving.run import run_serving

        # the offline backends check in load(); a server is started from the config, so check it here
        problems = ctx.config.spec.engine_problems(ctx.config, ctx.request.model_path, True)
        if problems:
            raise EngineArgumentError("; ".join(problems))
        result = run_serving(
            ctx.request.model_copy(update={"config": ctx.config}),
            # the server inherits CUDA_VISIBLE_DEVICES; no torch UUID check here, which would hold a CUDA context in
            # the runner beside the server's
            energy_for=lambda kind: ctx.energy_for(kind, False),
            environment_for=ctx.environment_for,
            emit=ctx.emit, phase=ctx.phase, out_dir=ctx.out_dir, held=ctx.held, gpu_indices=ctx.request.config.devices,
        )
        return finish(ctx, result)


#: every scenario by the name ``config.scenario`` takes
SCENARIOS: dict[str, Scenario] = {s.name: s for s in (Offline(), Serving())}
