"""How to run a config or a study, declared once: ``RunOptions``. The CLI builds `lem run`'s flags from each field's
``flag``/``help`` metadata, the Python API's ``run_experiment``/``run_study`` take the same names as keywords, and a
study runs on the same object (none of it but ``overrides``, ``n_cycles`` and ``order`` changes what is measured, so
none of it is in a study's config hash)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from llenergymeasure.errors import ConfigError
from llenergymeasure.host.gpu_lock import LockPolicy
from llenergymeasure.launchers.base import Timeouts


def _opt(default: Any = None, flag: str | None = None, help: str = "", study: bool = False, factory=None,
         **flags: tuple[str, str]):
    """A RunOptions field: ``flag`` and ``help`` for `lem run`; ``study``: only a study uses it (a single experiment
    refuses it, naming the flag); ``flags``: a composite field's sub-values -> (flag, help)."""
    meta = {"flag": flag, "help": help, "study": study, "flags": flags}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunOptions:
    """How to run a config or a study (``lem run``'s flags).

    ``overrides``: dotted field -> value, laid over the file (None: not given). ``image`` implies ``isolated``;
    ``slurm`` sends every run to Slurm. Study only: ``resume`` (True: the newest unfinished study of this name; a
    path: that folder), ``retry_failed``, ``fail_fast``, ``no_gaps``, ``detach``, ``allow_skipped`` (run the valid
    points when some are invalid), and ``n_cycles`` / ``order`` overriding the file's. ``dry_run``: plan and
    estimate only (llenergymeasure.plan.dry_run)."""

    output: Path = _opt(Path("results"), "--output", "Results directory.")
    overrides: Mapping[str, Any] = _opt(factory=dict)  # the config's own fields: their flags are config.checks.FLAGS
    isolated: bool = _opt(False, "--isolated", "Run in the backend's container image.")
    image: str | None = _opt(None, "--image", "Runner image to use (implies --isolated).")
    slurm: bool = _opt(False, "--slurm", "Run as Slurm jobs (runner: slurm; settings in slurm:).")
    timeouts: Timeouts = _opt(Timeouts(), wall_s=("--timeout", "Wall-clock limit for the runner, seconds."),
                              silence_s=("--silence-timeout", "Stop a runner silent this long, seconds."))
    #: None: the policy in force (gpu_lock.use_policy), by default wait for the GPU
    lock: LockPolicy | None = _opt(None, enabled=("--no-lock", "Measure even if another lem holds the GPU's lock."),
                                   timeout_s=("--lock-timeout",
                                              "Give up (exit 3) if a GPU is still busy after this many seconds (0 or more)."))
    resume: bool | Path | None = _opt(None, "--resume", "Study: finish an interrupted study (DIR, or its newest).",
                                      study=True)
    fail_fast: bool = _opt(False, "--fail-fast", "Study: stop at the first failed run (resumable).", study=True)
    no_gaps: bool = _opt(False, "--no-gaps", "Study: no pauses between runs.", study=True)
    retry_failed: bool = _opt(False, "--retry-failed", "Study, with --resume: run failed runs again.", study=True)
    detach: bool = _opt(False, "--detach", "Study on Slurm: submit every run and return; --resume collects them.",
                        study=True)
    allow_skipped: bool = _opt(False, "--allow-skipped",
                               "Study: run the valid points even if some are invalid (default: exit 2).", study=True)
    n_cycles: int | None = _opt(None, "--cycles", "Study: times each point runs (overrides n_cycles).", study=True)
    order: str | None = _opt(None, "--order", "Study: sequential | interleave | shuffle | latin_square (overrides "
                             "order).", study=True)
    dry_run: bool = _opt(False, "--dry-run", "Expand and validate, estimate each point's memory against the device; "
                         "run nothing.")

    def study_options_used(self) -> list[str]:
        """The flags of study-only options that are set."""
        return [flag for name, flag in STUDY_ONLY.items() if getattr(self, name) not in (None, False)]

    @classmethod
    def from_keywords(cls, **values: Any) -> RunOptions:
        """``RunOptions(**values)`` for the Python API's keywords, a bad name refused in one line naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{', '.join(unknown)}: not a run option (known: {', '.join(sorted(known))})")
        if isinstance(values.get("output"), str):
            values["output"] = Path(values["output"])
        if isinstance(values.get("resume"), str):
            values["resume"] = Path(values["resume"])
        return cls(**values)


def option_meta(name: str) -> Mapping[str, Any]:
    """A field's declaration: flag, help, study, flags (see ``_opt``)."""
    return next(f.metadata for f in fields(RunOptions) if f.name == name)


#: each study-only option and the `lem run` flag that sets it (messages name the flag)
STUDY_ONLY = {f.name: f.metadata["flag"] for f in fields(RunOptions) if f.metadata.get("study")}
