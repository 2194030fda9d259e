"""llenergymeasure — measure the energy and efficiency of LLM inference across backends.

The public Python API::

    import llenergymeasure as lem
    result = lem.run_experiment({"model": "/path/to/model", "n_prompts": 8})   # result.result_dir: its folder
    study = lem.run_study("study.yaml", progress=print)   # -> StudyResult: folder, manifest entries, summaries
    df = lem.load_results("results")             # -> pandas.DataFrame, one row per experiment
    plan, estimates = lem.dry_run("study.yaml")  # expand, validate, estimate memory per point; nothing runs
"""

from __future__ import annotations

from collections.abc import Callable as _Callable
from dataclasses import dataclass as _dataclass
from dataclasses import field as _field
from pathlib import Path as _Path
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from llenergymeasure.version import __version__

if _TYPE_CHECKING:
    import pandas as pd
    from lem_runner.contract import ExperimentConfig, ExperimentResult

    from llenergymeasure.plan import RunOptions
    from llenergymeasure.study import ManifestEntry, PointAggregate, StudyConfig


def run_experiment(
    config: ExperimentConfig | dict[str, _Any] | str | _Path,
    output: str | _Path = "results",
    isolated: bool = False,
    options: RunOptions | None = None,
    on_event: _Callable[[_Any], None] | None = None,
    **run_options: _Any,
) -> ExperimentResult:
    """Measure one experiment (a config object, a mapping, or a YAML/JSON file) and return its result.

    The result is also written to ``<output>/<experiment>/result.json``; ``result.result_dir`` is that folder.
    Any :class:`RunOptions` field is a keyword here (``image=``, ``timeouts=``, ``overrides=``, ...: the same names
    ``lem run``'s flags set); ``options`` (a whole RunOptions) replaces them all when given. ``on_event`` gets the
    runner's progress events. The same path as ``lem run``: the config validated, the launcher chosen and checked
    (Docker engine and image, Slurm) before a result folder exists. Raises ConfigError (bad config or an unknown
    option), SetupError (machine not ready) or RunFailed.
    """
    from llenergymeasure.experiment import with_result_dir
    from llenergymeasure.plan import RunOptions, plan_experiment

    options = options or RunOptions.from_keywords(output=output, isolated=isolated, **run_options)
    result, exp_dir = plan_experiment(config, options).run(on_event)
    return with_result_dir(result, exp_dir)


@_dataclass(frozen=True)
class StudyProgress:
    """Passed to ``run_study(progress=...)`` after each run: how far the study is, and the run that just ended."""

    done: int  # runs finished (done or failed) so far, this session and earlier ones
    total: int  # runs in the study
    entry: ManifestEntry  # the run that just ended: label, cycle, status, result_path, error

    def __str__(self) -> str:
        return f"{self.done}/{self.total} {self.entry.label} (cycle {self.entry.cycle}): {self.entry.status}"


@_dataclass(frozen=True)
class StudyResult:
    """What a study left: its folder, its manifest's runs (status, folder, error, timings), each point's statistics
    over its cycles, each done run's result by run number, and the controller's overhead per run."""

    study_dir: _Path
    status: str
    entries: list[ManifestEntry]
    summaries: list[PointAggregate]
    results: dict[int, ExperimentResult] = _field(default_factory=dict)
    skipped: list[str] = _field(default_factory=list)
    controller_overhead_s_per_experiment: float | None = None

    @property
    def failed(self) -> int:
        return sum(e.status == "failed" for e in self.entries)


def run_study(
    config: StudyConfig | dict[str, _Any] | str | _Path,
    output: str | _Path = "results",
    progress: _Callable[[StudyProgress], None] | None = None,
    options: RunOptions | None = None,
    **run_options: _Any,
) -> StudyResult:
    """Run a study (a StudyConfig, a mapping with base/sweep/groups/experiments, or a study file) and return what it
    left.

    ``progress`` is called with a :class:`StudyProgress` after each run ends. Any :class:`RunOptions` field is a
    keyword here, as ``lem run``'s flags set them: ``resume=True`` finishes the newest unfinished study of that name
    in ``output``, a path finishes that folder; ``isolated``, ``no_gaps``, ``fail_fast``, ``retry_failed``,
    ``n_cycles``, ``order``, ``timeouts``, ... ``options`` (a whole RunOptions) replaces them all when given. The same
    path as ``lem run``: the study validated and expanded (invalid points refused unless ``allow_skipped``),
    containers and Slurm checked before a study folder exists. Failed runs do not raise: see
    ``StudyResult.failed``. Raises ConfigError for a bad study or an unknown option, SetupError for a machine not
    ready, StudyInterrupted on Ctrl-C (the study stays resumable). ``detach=True`` (runs on Slurm): submit every run
    and return with status 'detached'; ``resume=...`` later collects them.
    """
    from llenergymeasure.plan import RunOptions, plan_study
    from llenergymeasure.study import StudyObserver

    if options is None:
        if run_options.get("resume") is False:
            run_options["resume"] = None
        options = RunOptions.from_keywords(output=output, **run_options)

    class _Progress(StudyObserver):
        def run_finished(self, entry, outcome) -> None:
            if progress is not None:
                entries = outcome.manifest.entries
                progress(StudyProgress(sum(e.status in ("done", "failed") for e in entries), len(entries), entry))

    outcome = plan_study(config, options).run(_Progress())
    return StudyResult(
        study_dir=outcome.study_dir, status=outcome.status, entries=list(outcome.manifest.entries),
        summaries=outcome.aggregates(), results=dict(outcome.results), skipped=list(outcome.manifest.skipped),
        controller_overhead_s_per_experiment=outcome.manifest.controller_overhead_s_per_experiment,
    )


def load_results(directory: str | _Path = "results") -> pd.DataFrame:
    """Every experiment under ``directory`` (single runs and study sub-runs; failed ones with status 'failed') as
    one row of flat columns with units in their names (docs/results-columns.md). Raises ConfigError when the folder
    is missing or holds no experiment."""
    from llenergymeasure.results.frame import load_results as _load

    return _load(directory)


def __getattr__(name: str):
    """``RunOptions`` and ``dry_run`` (llenergymeasure.plan) without importing the controller at import time."""
    if name in ("RunOptions", "dry_run"):
        from llenergymeasure import plan

        return getattr(plan, name)
    raise AttributeError(f"module 'llenergymeasure' has no attribute {name!r}")


__all__ = ["RunOptions", "StudyProgress", "StudyResult", "__version__", "dry_run", "load_results",
           "run_experiment", "run_study"]


def __dir__() -> list[str]:
    """The public API only (not the helpers this module imports)."""
    return sorted(__all__)
