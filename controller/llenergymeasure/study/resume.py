"""Picking a study back up: find its folder, make sure no other controller is working in it, check it is the same
study, and put runs a killed controller left half-done back to pending. A half-done run's folder is deleted, never
read: its runner may have been killed mid-write, or may have finished after the controller died, unrecorded."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from pathlib import Path

from llenergymeasure.errors import ConfigError
from llenergymeasure.study.manifest import MANIFEST_FILE, Attempt, Manifest, ManifestEntry, load_manifest

LOCK_FILE = ".lock"
#: where engine sessions keep their requests while they run (study/engines.py); gone once each session ends
SESSIONS_DIR = ".sessions"


def find_unfinished(output: Path, name: str) -> Path:
    """The most recently created study folder in ``output`` for study ``name`` with runs still to do."""
    candidates = []
    if output.is_dir():
        for manifest_file in output.glob(f"{name}-*/{MANIFEST_FILE}"):  # the name is [A-Za-z0-9._-]: no wildcards
            try:
                manifest = load_manifest(manifest_file.parent)
            except ConfigError:
                continue
            if manifest.study == name and manifest.unfinished:
                candidates.append((manifest.created, manifest_file.parent.name, manifest_file.parent))
    if not candidates:
        raise ConfigError(f"--resume: no unfinished study named '{name}' in {output} (give its folder: --resume DIR)")
    return max(candidates)[2]


class StudyLock:
    """An exclusive lock on the study folder for as long as a controller runs it. The kernel drops it when the
    process dies, however it dies, so a SIGKILLed study can be resumed at once."""

    def __init__(self, study_dir: Path) -> None:
        self.path = study_dir / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> StudyLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(f"{self.path.parent}: another lem process (pid {holder}) is running this study") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _run_dir_pattern(entry: ManifestEntry) -> re.Pattern[str]:
    """A run folder of this entry as FileResultsRepository names it: <name>-<YYYYmmdd-HHMMSS>[-mmm][-n] (older
    versions named it to the second)."""
    return re.compile(rf"^{re.escape(entry.name)}-\d{{8}}-\d{{6}}(-\d{{3}})?(-\d+)?$")


def discard_partial(study_dir: Path, manifest: Manifest, entry: ManifestEntry) -> list[Path]:
    """Delete the folders of ``entry``'s unfinished attempt: the one it recorded, and any it had created but not yet
    recorded when the controller died. Folders of finished runs and of earlier failed attempts are kept."""
    keep = {e.result_path for e in manifest.entries if e.status in ("done", "failed") and e.result_path}
    keep |= {a.result_path for e in manifest.entries for a in e.earlier if a.result_path}
    pattern = _run_dir_pattern(entry)
    doomed = [p for p in study_dir.iterdir() if p.is_dir() and pattern.match(p.name) and p.name not in keep]
    if entry.result_path and entry.result_path not in keep:
        recorded = study_dir / entry.result_path
        if recorded.is_dir() and recorded not in doomed:
            doomed.append(recorded)
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    entry.result_path = None
    return doomed


def reap_container(experiment_id: str) -> None:
    """Remove a container a killed controller left running for this run (it outlives its controller, unlike a local
    runner, which the kernel kills with it). Best effort: no engine, nothing to reap."""
    try:
        from llenergymeasure.host.docker_engine import docker_client

        client = docker_client()
        for container in client.containers.list(all=True, filters={"label": f"lem.experiment={experiment_id}"}):
            container.remove(force=True)
    except Exception:
        pass


def reap_study_containers(study_dir: Path) -> None:
    """Remove engine-session containers a killed controller left working in this study folder (best effort)."""
    try:
        from llenergymeasure.host.docker_engine import docker_client

        client = docker_client()
        label = f"lem.study={study_dir.resolve()}"
        for container in client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)
    except Exception:
        pass


def reset_entry(entry: ManifestEntry) -> None:
    """Back to pending, as if never started (its attempt count stays)."""
    entry.status = "pending"
    entry.runner = entry.error = entry.reason = None
    entry.started = entry.finished = None
    entry.duration_s = entry.runner_s = None
    entry.slurm_job_id = entry.slurm_state = entry.slurm_exit_code = None
    entry.engine_session = None


def recover(study_dir: Path, manifest: Manifest, retry_failed: bool = False) -> list[str]:
    """Make ``manifest`` resumable: runs left ``running`` (the controller was killed) go back to pending and their
    folders are deleted; with ``retry_failed``, failed runs go back to pending too (their folders are kept and listed
    under ``earlier``). Returns one note per change, for the user."""
    notes = []
    if any(e.status == "running" and e.runner == "docker" and e.engine_session for e in manifest.entries):
        reap_study_containers(study_dir)
    shutil.rmtree(study_dir / SESSIONS_DIR, ignore_errors=True)  # a killed controller's engine sessions' requests
    for entry in manifest.entries:
        if entry.status == "running" and entry.runner == "slurm":
            continue  # its job may still run: the concurrent path re-attaches to it (study/concurrent.py)
        if entry.status == "running":
            if entry.runner == "docker" and entry.result_path:
                reap_container(entry.result_path)
            gone = discard_partial(study_dir, manifest, entry)
            reset_entry(entry)
            notes.append(f"run {entry.run} ({entry.label}, cycle {entry.cycle}) was cut off: it runs again"
                         + (f"; discarded {', '.join(p.name for p in gone)}" if gone else ""))
        elif entry.status == "failed" and retry_failed:
            entry.earlier.append(Attempt(result_path=entry.result_path, error=entry.error, reason=entry.reason))
            entry.result_path = None
            reset_entry(entry)
            notes.append(f"run {entry.run} ({entry.label}, cycle {entry.cycle}) failed before: it runs again")
    for entry in manifest.entries:
        if entry.status == "pending":  # a folder a killed controller created before it could record it
            gone = discard_partial(study_dir, manifest, entry)
            if gone:
                notes.append(f"discarded unrecorded folder(s) {', '.join(p.name for p in gone)}")
    manifest.status = "running"
    manifest.stop_reason = None
    return notes
