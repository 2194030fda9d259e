"""Which runs of a study share an engine: the engine session a run goes to, opened and closed as the schedule
moves on (study config ``engine_reuse``).

A run joins the open session when it is in the same cycle and has the same engine identity
(lem_runner.contract.engine); otherwise that session is closed, and a new one is opened only when the next pending
run could join it (a run alone gets a plain cold runner, as with ``engine_reuse: false``). A session that ended
(a failed or killed run) is never joined again: the runs after it open a new one.
"""

from __future__ import annotations

from pathlib import Path

from lem_runner.contract import engine_identity, reuse_refusal

from llenergymeasure.launchers.session import EngineSession
from llenergymeasure.study.manifest import ManifestEntry
from llenergymeasure.study.resume import SESSIONS_DIR


class EngineSessions:
    """The study's open engine session, if any, and the rule for joining it."""

    def __init__(self, study, outcome, isolated: bool, launcher_for, controller_session) -> None:
        self.study = study
        self.outcome = outcome
        self.isolated = isolated
        self.launcher_for = launcher_for
        self.controller_session = controller_session  # the manifest's Session: the runner time of closes goes there
        self.current: EngineSession | None = None
        self.opened = 0

    def _key(self, entry: ManifestEntry) -> tuple[str, int] | None:
        """(engine identity, cycle) of a run that may share an engine, else None."""
        if not self.study.engine_reuse:
            return None
        config = self.outcome.points[entry.point].config
        if reuse_refusal(config) is not None:
            return None
        return engine_identity(config), entry.cycle

    def for_run(self, entry: ManifestEntry, following: ManifestEntry | None):
        """``(session, launcher)`` for ``entry``: the engine session it runs in (None: a runner of its own) and the
        launcher already made for it while deciding (None: make one)."""
        key = self._key(entry)
        current = self.current
        if current is not None and current.alive and key == (current.identity, current.cycle):
            return current, None
        self.close()
        if key is None or following is None or self._key(following) != key:
            return None, None
        launcher = self.launcher_for(self.outcome.points[entry.point], self.isolated)
        if not launcher.sessions:
            return None, launcher
        self.opened += 1
        session_dir = Path(self.outcome.study_dir) / SESSIONS_DIR / f"{entry.run:04d}-{key[0]}"
        self.current = EngineSession(launcher, session_dir, key[0], key[1])
        return self.current, None

    def close(self) -> None:
        import time

        current, self.current = self.current, None
        if current is not None:
            t = time.monotonic()
            current.close()
            self.controller_session.runner_s += time.monotonic() - t
