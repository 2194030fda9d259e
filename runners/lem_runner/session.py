"""Engine sessions, runner side: one loaded engine measuring the runs the controller hands over one by one.

The controller writes ``request-0001.json``, ``request-0002.json``, ... into the session folder (each after the last
one's result is recorded) and ``end`` to close it (contract/protocol.py). The engine is loaded by the first run and
kept; each later run gets it through :class:`ReusedEngine` (its ``load`` returns at once) after the backend has
adopted the run's own settings (``adopt``: decoding, lengths, batch size; vLLM's prefix cache reset). Every run still
takes its own idle baseline and warmup: the warmup is what lets the window start on an engine in the same state
whether it was loaded a moment ago or has served runs before (caches and allocator warm, compiled kernels built).

A serving run's engine is its server: the session keeps the server it started (``server_for``) and hands it to the
next serving run of the same engine identity once the server reports itself idle and has emptied what a run leaves
behind (``ServerCommand.reset_routes``: vLLM's prefix cache); a server that cannot say it is idle, or does not get
there in time, is stopped and a new one started for the run (which then records a fresh engine).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from lem_runner.backends.base import InferenceBackend
from lem_runner.contract.config import ExperimentConfig
from lem_runner.contract.engine import engine_identity
from lem_runner.contract.protocol import EXIT_FAILED, EXIT_OK, SESSION_END_FILE, ProgressEvent, session_request_file
from lem_runner.contract.result import EngineUse
from lem_runner.records import GenerationRecord, LoadedModel

#: how long a kept server gets to finish the last run's requests (ones the client gave up on) before the next run
IDLE_WAIT_S = 30.0


class HeldEngine:
    """The engine a runner process holds: created and loaded by its first run, kept for the session's next ones."""

    def __init__(self, session: str | None = None, scratch: Path | None = None) -> None:
        self.session = session
        self.scratch = scratch  # the session folder: where a kept server's log lives (None: the run's own folder)
        self.backend: InferenceBackend | None = None
        self.loaded: LoadedModel | None = None
        self.identity: str | None = None
        self.load_sec = 0.0
        self.runs_served = 0
        self.bound = False  # the devices were bound (environment set) by the first run
        self.binding = None
        self.server = None  # serving: the ManagedServer kept for the session's next serving run
        self.reset: list[str] = []  # what was emptied before the current run on a kept engine

    def server_for(self, config: ExperimentConfig, start: Callable[[], object]) -> tuple[object, bool]:
        """``(server, fresh)`` for a serving run: the kept server when it has ``config``'s engine identity, is alive,
        idle and reset; else a new one from ``start()`` (not yet started), kept. A kept server that cannot be handed
        over (dead, busy past ``IDLE_WAIT_S``, its reset refused) is stopped first."""
        identity = engine_identity(config)
        self.reset = []
        kept = self.server
        if kept is not None and identity == self.identity and kept.alive() and kept.wait_idle(IDLE_WAIT_S):
            try:
                self.reset = kept.reset()
                return kept, False
            except RuntimeError:  # ServerError: a refused reset; the run gets a fresh server instead
                self.reset = []
        self.close()
        self.identity = identity
        self.server = start()
        return self.server, True

    def started(self, seconds: float) -> None:
        """The server this run started became ready after ``seconds`` (the engine's load time)."""
        self.load_sec = seconds

    def engine_for(self, config: ExperimentConfig, create: Callable[[], InferenceBackend]) -> InferenceBackend:
        """The backend this run measures on: the held one (after it adopts ``config``), or a new one, held."""
        identity = engine_identity(config)
        self.reset = []
        if self.backend is not None and self.loaded is not None:
            if identity != self.identity:
                raise RuntimeError(f"this engine session holds engine {self.identity}; the request needs {identity} "
                                   "(the controller groups only runs of one engine into a session)")
            adopt = getattr(self.backend, "adopt", None)
            if adopt is None:
                raise RuntimeError(f"the {self.backend.name} backend cannot serve a second run on its engine")
            self.reset = list(adopt(config) or [])
            return ReusedEngine(self.backend, self.loaded)
        self.close()
        self.identity = identity
        self.backend = create()
        return _LoadTimer(self.backend, self)

    def use(self, fresh: bool) -> EngineUse:
        """What the result records about the engine it ran on (call before :meth:`served`)."""
        server = self.server
        return EngineUse(fresh=fresh, runs_served=self.runs_served, identity=self.identity or "",
                         load_s=round(self.load_sec, 4), session=self.session, pid=os.getpid(),
                         server_pid=server.pid if server is not None else None, reset=list(self.reset))

    def served(self) -> None:
        self.runs_served += 1

    def close(self) -> None:
        backend, self.backend, self.loaded = self.backend, None, None
        server, self.server = self.server, None
        self.runs_served, self.load_sec, self.reset = 0, 0.0, []
        if backend is not None:
            backend.close()
        if server is not None:
            server.stop()


class _LoadTimer:
    """A new backend, passed through, that tells its holder what it loaded and how long it took."""

    def __init__(self, backend: InferenceBackend, holder: HeldEngine) -> None:
        self._backend, self._holder = backend, holder
        self.name, self.batch_size = backend.name, backend.batch_size

    def load(self) -> LoadedModel:
        t0 = time.perf_counter()
        loaded = self._backend.load()
        self._holder.load_sec = time.perf_counter() - t0
        self._holder.loaded = loaded
        self.batch_size = self._backend.batch_size
        return loaded

    def generate(self, prompts: list[str]) -> list[GenerationRecord]:
        return self._backend.generate(prompts)

    def close(self) -> None:  # the holder closes the engine
        pass


class ReusedEngine:
    """A held, loaded engine serving a later run: ``load`` returns what the first load reported, at once."""

    def __init__(self, backend: InferenceBackend, loaded: LoadedModel) -> None:
        self._backend, self._loaded = backend, loaded
        self.name, self.batch_size = backend.name, backend.batch_size

    def load(self) -> LoadedModel:
        """The first load's record; a backend whose runs set some of it themselves (``loaded_for_run``: pytorch's
        batch size and generate arguments) updates it for this run."""
        for_run = getattr(self._backend, "loaded_for_run", None)
        return for_run(self._loaded) if for_run is not None else self._loaded

    def generate(self, prompts: list[str]) -> list[GenerationRecord]:
        return self._backend.generate(prompts)

    def close(self) -> None:
        pass


MeasureOne = Callable[[Path, int, HeldEngine], int]


def serve_session(session_dir: Path, measure: MeasureOne, emit: Callable[[ProgressEvent], None],
                  idle_exit_s: float | None, poll_s: float = 0.02) -> int:
    """Measure ``request-0001.json``, ``request-0002.json``, ... as each appears, on one held engine, until ``end``
    appears (exit 0) or a run fails (its exit code). With ``idle_exit_s``, a session that gets neither for that long
    ends (its controller is gone: a container outlives a killed controller)."""
    held = HeldEngine(session=session_dir.name, scratch=session_dir)
    n = 1
    try:
        while True:
            path = session_dir / session_request_file(n)
            waited_since = time.monotonic()
            while not path.exists():
                if (session_dir / SESSION_END_FILE).exists():
                    return EXIT_OK
                if idle_exit_s is not None and time.monotonic() - waited_since > idle_exit_s:
                    emit(ProgressEvent(event="error", message=f"engine session: no request {n} and no end after "
                                       f"{idle_exit_s:g} s; the controller is gone, closing"))
                    return EXIT_FAILED
                time.sleep(poll_s)
            code = measure(path, n, held)
            if code != EXIT_OK:
                return code
            n += 1
    finally:
        held.close()
