"""Which code a GPU figure was measured on, and whether that code has changed since (BENCHMARKS.md's GPU rows).

A lent GPU machine gets a copy of the working tree without ``.git``, so a result cannot always name its commit. It
records a digest of the code its figures describe instead (``GPU_CODE``: git blob ids of those files, computed
without git), and the commit when git or ``LEM_COMMIT`` can tell. The report finds the commit whose tree has that
digest, and says "stale since <commit> (<date>)" when a later commit changed that code. A result from before this
was recorded (no digest, no commit) is placed at the last commit before its date, and the row says it was inferred.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the code whose behaviour the GPU rows measure: energy, devices, GPU state, the measurement loop, the PyTorch path
GPU_CODE = ("runners/lem_runner/energy", "runners/lem_runner/measurement", "runners/lem_runner/devices.py",
            "runners/lem_runner/measure.py", "runners/lem_runner/__main__.py", "runners/lem_runner/backends/pytorch",
            "controller/llenergymeasure/gpustate", "bench/gpu.py", "bench/gpu_check.py")


def _blob_id(data: bytes) -> str:
    """git's object id of a file's content (what ``git ls-tree`` lists), without git."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _digest(entries: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{p} {b}\n" for p, b in sorted(entries.items())).encode()).hexdigest()[:16]


def code_digest(root: Path = ROOT) -> str:
    """The digest of the working tree's GPU_CODE (its .py files)."""
    entries = {}
    for rel in GPU_CODE:
        base = root / rel
        files = [base] if base.is_file() else sorted(base.rglob("*.py")) if base.is_dir() else []
        for f in files:
            if "__pycache__" not in f.parts:
                entries[f.relative_to(root).as_posix()] = _blob_id(f.read_bytes())
    return _digest(entries)


def _git(*args: str, root: Path = ROOT) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def digest_at(commit: str, root: Path = ROOT) -> str | None:
    listing = _git("ls-tree", "-r", commit, "--", *GPU_CODE, root=root)
    if listing is None:
        return None
    entries = {}
    for line in listing.splitlines():
        meta, _, path = line.partition("\t")
        if path.endswith(".py"):
            entries[path] = meta.split()[2]
    return _digest(entries)


def provenance(root: Path = ROOT) -> dict:
    """What a GPU result records about the code it ran: its commit (git, else LEM_COMMIT, else None), whether the
    GPU code differed from that commit, and the digest."""
    digest = code_digest(root)
    commit = _git("rev-parse", "HEAD", root=root) or os.environ.get("LEM_COMMIT") or None
    at = digest_at(commit, root) if commit else None
    return {"commit": commit, "code_digest": digest, "code_paths": list(GPU_CODE),
            "uncommitted_changes": (at != digest) if at else None}


def _commit_with_digest(digest: str, root: Path, depth: int = 300) -> str | None:
    for commit in (_git("log", "--format=%H", f"-n{depth}", "--", *GPU_CODE, root=root) or "").splitlines():
        if digest_at(commit, root) == digest:
            return commit
    return None


def measured_on(data: dict, root: Path = ROOT) -> tuple[str | None, str]:
    """(the commit the result's figures were measured on, how that is known)."""
    prov = data.get("provenance") or {}
    if prov.get("commit") and _git("cat-file", "-e", f"{prov['commit']}^{{commit}}", root=root) is not None:
        return prov["commit"], "uncommitted changes over it" if prov.get("uncommitted_changes") else "recorded"
    if prov.get("code_digest"):
        found = _commit_with_digest(prov["code_digest"], root)
        return (found, "by its code digest") if found else (None, f"code digest {prov['code_digest']} matches no commit")
    date = data.get("date")
    if date:
        found = _git("log", "-1", "--format=%H", f"--before={date}", root=root)
        if found:
            return found, "inferred from the run's date: the file names no commit"
    return None, "the file records no commit"


def stale_since(commit: str, root: Path = ROOT) -> tuple[str, str, int] | None:
    """(first later commit that changed GPU_CODE, its date, how many did) in HEAD's history; None when none did."""
    log = _git("log", "--reverse", "--format=%h %cs", f"{commit}..HEAD", "--", *GPU_CODE, root=root)
    if not log:
        return None
    lines = log.splitlines()
    short, date = lines[0].split()
    return short, date, len(lines)


def describe(data: dict, root: Path = ROOT) -> str:
    """The provenance note of a GPU row: measured on which commit, and stale since when."""
    commit, how = measured_on(data, root)
    if commit is None:
        return f"measured on unknown code ({how}): treat as stale"
    short = _git("log", "-1", "--format=%h", commit, root=root) or commit[:7]
    date = _git("log", "-1", "--format=%cs", commit, root=root) or "?"
    note = f"measured on `{short}` ({date}{'' if how == 'recorded' else ', ' + how})"
    stale = stale_since(commit, root)
    if stale:
        note += f"; **stale since `{stale[0]}` ({stale[1]})**: {stale[2]} later commit(s) change the code it measures"
    return note
