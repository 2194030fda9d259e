"""What a simulated GPU keeps across processes: the settings a root caller changed (power limit, application and locked
clocks, persistence mode), the history of the power limit (the energy counter integrates power under the limit in
force at each instant) and the trace's t0 when the scenario leaves it to the state file.

A real GPU keeps such settings until they are reset or the driver reloads, so a lem killed mid-sweep leaves it
changed; the state file is that memory. Writes are atomic (a temporary file renamed over the old) under an
exclusive ``flock`` on a lock file beside it, so a controller and a runner may change and read it at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

#: per-device settings and their "not set" value (the device default)
SETTINGS = {"power_limit_mw": None, "applications_clocks": None, "locked_sm_clocks": None,
            "locked_memory_clocks": None, "persistence": None, "limit_history": []}


class State:
    """The state file's content, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._stamp: tuple[int, int] | None = None
        self.doc: dict = {"t0": None, "devices": {}}

    def _read(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self.doc = None, {"t0": None, "devices": {}}
            return
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # a half-visible write cannot happen (rename); an unreadable file keeps the last content
        self._stamp, self.doc = stamp, doc

    def refresh(self) -> dict:
        self._read()
        return self.doc

    def device(self, uuid: str) -> dict:
        saved = self.refresh().get("devices", {}).get(uuid, {})
        return {**SETTINGS, **saved}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _write(self, doc: dict) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._stamp = None

    def ensure_t0(self, scenario_t0: float | None) -> float:
        """The trace's t0: the scenario's, else the state file's, set now when the file is new."""
        if scenario_t0 is not None:
            return scenario_t0
        t0 = self.refresh().get("t0")
        if t0 is not None:
            return float(t0)
        with self._locked():
            self._stamp = None
            doc = self.refresh()
            if doc.get("t0") is None:
                doc = {**doc, "t0": time.time()}
                self._write(doc)
            return float(self.refresh()["t0"])

    def update(self, uuid: str, **changes) -> dict:
        """Set some of one device's settings (None restores the default) and return them all."""
        with self._locked():
            self._stamp = None
            doc = json.loads(json.dumps(self.refresh()))
            devices = doc.setdefault("devices", {})
            dev = {**SETTINGS, **devices.get(uuid, {})}
            dev.update(changes)
            devices[uuid] = dev
            self._write(doc)
        return self.device(uuid)

    def changed_devices(self) -> dict[str, dict]:
        """Devices whose settings differ from their defaults now (what a killed sweep can leave behind)."""
        out = {}
        for uuid, dev in self.refresh().get("devices", {}).items():
            diff = {k: v for k, v in dev.items() if k != "limit_history" and v is not None}
            if diff:
                out[uuid] = diff
        return out
