"""One path from a request to a result, shared by `lem run` and the Python API, so the two cannot drift: the config
read once and validated, each point's launcher chosen once and checked (Docker engine and image, Slurm) before any
result folder exists; then the plan is run, or (a dry run) only its memory estimated."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lem_runner.contract import ExperimentConfig, ExperimentResult
from pydantic import ValidationError

from llenergymeasure.config.host_checks import (
    gpu_problem,
    model_problem,
    refuse_unreachable_endpoint,
    refuse_without_gpu,
)
from llenergymeasure.config.study import Expansion, StudyConfig, StudyPoint
from llenergymeasure.errors import ConfigError
from llenergymeasure.host.gpu_lock import LockPolicy, use_policy
from llenergymeasure.launchers import Launcher
from llenergymeasure.launchers.select import select_launcher
from llenergymeasure.options import STUDY_ONLY, RunOptions

__all__ = ["STUDY_ONLY", "ExperimentPlan", "RunOptions", "StudyPlan", "dry_run", "plan", "plan_experiment",
           "plan_study"]

@dataclass
class ExperimentPlan:
    """One experiment, validated, with the launcher that will run it (already checked)."""

    config: ExperimentConfig
    launcher: Launcher
    options: RunOptions
    source: str

    def run(self, on_event=None) -> tuple[ExperimentResult, Path]:
        from llenergymeasure.experiment import execute_experiment

        _refuse_dry_run(self.options)
        with _lock_policy(self.options.lock):
            return execute_experiment(self.config, output=self.options.output, launcher=self.launcher,
                                      on_event=on_event, timeouts=self.options.timeouts, source=self.source)


@dataclass
class StudyPlan:
    """A study, expanded and validated, with the launcher chosen for each point (containers and Slurm checked with
    them before a study folder exists)."""

    study: StudyConfig
    expansion: Expansion
    launchers: list[Launcher]
    options: RunOptions
    source: str

    def launcher_for(self, point: StudyPoint, isolated: bool = False) -> Launcher:
        """A fresh launcher of the kind planned for ``point`` (the same choice: ``select_launcher`` over the same
        config and options), so each run opens its own engine connection and one restarted between runs is found."""
        return select_launcher(point.config, isolated=self.options.isolated)

    def run(self, observer=None):
        from llenergymeasure.study import execute_study

        o = self.options
        _refuse_dry_run(o)
        with _lock_policy(o.lock):
            return execute_study(self.study, self.expansion, output=o.output, options=o, observer=observer,
                                 launcher_for=self.launcher_for,
                                 study_file=self.source if self.source != "study" else None)


def _lock_policy(policy: LockPolicy | None):
    return use_policy(policy) if policy is not None else nullcontext()


def _refuse_dry_run(options: RunOptions) -> None:
    if options.dry_run:
        raise ConfigError("--dry-run: this plan is for estimating only; plan it again without dry_run to run it")


def dry_run(config: Any, options: RunOptions = RunOptions()) -> tuple[ExperimentPlan | StudyPlan, list]:
    """Expand and validate ``config`` as a run would, and estimate each point's memory against its device
    (llenergymeasure.memory): the plan and one MemoryEstimate per point (``fits`` False: it cannot fit). Nothing is
    loaded, started or written."""
    from llenergymeasure.memory import estimate_points

    planned = plan(config, replace(options, dry_run=True))
    points = ([(p.label, p.config) for p in planned.expansion.points] if isinstance(planned, StudyPlan)
              else [(planned.config.experiment_name, planned.config)])
    return planned, estimate_points(points)


def _overrides(options: RunOptions) -> dict[str, Any]:
    overrides = dict(options.overrides)
    if options.slurm:
        if options.isolated or options.image:
            raise ConfigError("--slurm: not with --isolated/--image (pick a container with slurm.start and "
                              "slurm.image)")
        overrides["runner"] = "slurm"
    return overrides


def _read(config: Any, what: str) -> tuple[Any, str, Path | None]:
    """(the mapping or model, its source name, the folder its relative paths are relative to); a file read once."""
    from llenergymeasure.config.loader import read_config_file

    if config is None:  # `lem run --model ...`: the defaults and the flags
        return {}, "command line", None
    if isinstance(config, (str, Path)):
        path = Path(config)
        return read_config_file(path), str(path), path.resolve().parent
    return config, what, Path.cwd()


def plan(config: Any, options: RunOptions = RunOptions()) -> ExperimentPlan | StudyPlan:
    """A study plan for a study file or mapping (one with base:, sweep:, groups: or experiments:) or a StudyConfig,
    else an experiment plan."""
    from llenergymeasure.study import is_study

    data, source, folder = _read(config, "config")
    if isinstance(data, StudyConfig) or (isinstance(data, dict) and is_study(data)):
        return _plan_study(data, source, folder, options)
    return _plan_experiment(data, source, folder, options)


def plan_experiment(config: Any, options: RunOptions = RunOptions()) -> ExperimentPlan:
    data, source, folder = _read(config, "config")
    return _plan_experiment(data, source, folder, options)


def plan_study(config: Any, options: RunOptions = RunOptions()) -> StudyPlan:
    data, source, folder = _read(config, "study")
    return _plan_study(data, source, folder, options)


def _plan_experiment(data: Any, source: str, folder: Path | None, options: RunOptions) -> ExperimentPlan:
    from llenergymeasure.config.loader import config_from_data, parse_config
    from llenergymeasure.results.output_path import check_output_dir

    options = replace(options, output=check_output_dir(Path(options.output)))
    used = options.study_options_used()
    if used:
        raise ConfigError(f"{used[0]}: only for a study file (one with base:, sweep:, groups: or experiments:)")
    overrides = _overrides(options)
    if isinstance(data, ExperimentConfig):  # validated again, as a mapping or a file is
        data, folder = data.model_dump(mode="json", exclude_unset=True), None
    if not isinstance(data, dict):
        parse_config(data, source)  # raises: not a mapping
    cfg = config_from_data(data, source, folder, overrides)
    launcher = select_launcher(cfg, isolated=options.isolated, image=options.image)
    if problem := _contained_problem(cfg, launcher, options):
        raise ConfigError(f"{source}: {problem}")
    if options.dry_run and not launcher.allocates_devices:
        refuse_without_gpu(cfg, source)  # a run checks it after restoring a dead lem's GPU journal (experiment.py)
    if launcher.check_key(cfg) is not None and not options.dry_run:  # checked before a result folder exists
        launcher.check(cfg)  # (a container checks its engine's settings: their refusal comes first)
    if problem := model_problem(cfg):  # validate refuses it as the run does, naming the file
        raise ConfigError(f"{source}: {problem}")
    if not options.dry_run:
        refuse_unreachable_endpoint(cfg, source)
    return ExperimentPlan(cfg, launcher, options, source)


def _with_schedule(study: StudyConfig, options: RunOptions, source: str) -> StudyConfig:
    """The study with ``--cycles`` / ``--order`` laid over the file's, validated as the file's own fields are."""
    update = {k: v for k, v in (("n_cycles", options.n_cycles), ("order", options.order)) if v is not None}
    if not update:
        return study
    from llenergymeasure.config.checks import validation_problems
    from llenergymeasure.config.loader import format_problems

    try:
        StudyConfig.model_validate({**study.model_dump(exclude={"base"}), **update})
    except ValidationError as exc:
        problems = [p.replace("n_cycles:", "--cycles:", 1).replace("order:", "--order:", 1)
                    for p in validation_problems(exc, StudyConfig)]
        raise ConfigError(format_problems("command line", problems)) from None
    return study.model_copy(update=update)


def _plan_study(data: Any, source: str, folder: Path | None, options: RunOptions) -> StudyPlan:
    from llenergymeasure.config.loader import format_problems
    from llenergymeasure.config.study import expand_study, study_from_data, unused_flags
    from llenergymeasure.results.output_path import check_output_dir

    options = replace(options, output=check_output_dir(Path(options.output)))
    if options.image:
        raise ConfigError("--image: only for one experiment (a study's points name theirs with runner: "
                          "docker:<image>)")
    if options.retry_failed and not options.resume:
        raise ConfigError("--retry-failed: only with --resume")
    overrides = _overrides(options)
    folder = folder or Path.cwd()
    if isinstance(data, StudyConfig):  # validated again, as a mapping or a file is
        data = data.model_dump(mode="json")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with base/sweep/groups/experiments, got "
                          f"{type(data).__name__}")
    study = study_from_data(data, source, folder, overrides)
    problems = unused_flags(study, overrides)
    if problems:
        raise ConfigError(format_problems(source, problems))
    study = _with_schedule(study, options, source)
    expansion = expand_study(study, source)
    if not options.allow_skipped:
        expansion.refuse_invalid(source)
    launchers = [select_launcher(p.config, isolated=options.isolated) for p in expansion.points]
    problems = [f"{p.label}: {why}" for p, launcher in zip(expansion.points, launchers)
                if (why := _contained_problem(p.config, launcher, options))
                or (not launcher.allocates_devices and (why := gpu_problem(p.config)))]
    if problems:
        raise ConfigError(format_problems(source, problems))
    if options.dry_run:
        return StudyPlan(study, expansion, launchers, options, source)
    for endpoint in {p.config.serving.endpoint: p.config for p in expansion.points}.values():
        refuse_unreachable_endpoint(endpoint, source)
    _preflight(expansion, launchers)
    if options.detach and not any(launcher.concurrent for launcher in launchers):
        raise ConfigError("--detach: only for a study whose runs go to Slurm (runner: slurm or --slurm)")
    return StudyPlan(study, expansion, launchers, options, source)


def _contained_problem(config: ExperimentConfig, launcher: Launcher, options: RunOptions) -> str | None:
    """What the container --isolated (or --image) chose cannot do with this config, or None; a config that names
    its container itself (runner: docker) was refused at load already (config/checks.py)."""
    from llenergymeasure.config.checks import contained_task_problem

    if not launcher.contained or not (options.isolated or options.image):
        return None
    return contained_task_problem(config, "run without --isolated" + ("/--image" if options.image else ""))


def _preflight(expansion: Expansion, launchers: list[Launcher]) -> None:
    """Each launcher's own check, once per thing it checks (``check_key``): a container engine that answers and each
    image present and speaking this controller's contract, a Slurm cluster that answers (SetupError, exit 3, naming
    the fix) — rather than every run failing."""
    checked: set = set()
    for point, launcher in zip(expansion.points, launchers):
        key = launcher.check_key(point.config)
        if key is not None and key not in checked:
            launcher.check(point.config)
            checked.add(key)

