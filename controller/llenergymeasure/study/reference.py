"""A study with ``quality.reference``: its reference point runs first and writes its outputs into its run folder
(lem_runner.contract.quality.REFERENCE_FILE); before every later run starts, the newest of them is placed in that
run's own folder (COMPARED_FILE, a hard link where the file system allows, else a copy; experiment.prepare_run), where every launcher's
runner reads it: no host path to translate for a container or a Slurm node, and no large request
(docs/method.md, "Output fidelity")."""

from __future__ import annotations

from pathlib import Path

from lem_runner.contract.quality import COMPARED_FILE, REFERENCE_FILE, FidelityRequest


def reference_first(outcome, pending: list) -> list:
    """``pending`` with the reference's first run moved to the front while the reference has no finished run."""
    ref = outcome.reference
    if ref is None or any(e.point == ref and e.status == "done" for e in outcome.manifest.entries):
        return pending
    first = next((e for e in pending if e.point == ref), None)
    return pending if first is None else [first, *(e for e in pending if e is not first)]


def fidelity_request(outcome, entry) -> tuple[FidelityRequest | None, Path | None]:
    """What the run ``entry`` is told (it is the reference; or it is compared, with the reference's newest outputs
    file to place in its folder; or why there is none) and that file."""
    ref = outcome.reference
    if ref is None:
        return None, None
    label = outcome.points[ref].label
    if entry.point == ref:
        return FidelityRequest(reference=label, is_reference=True), None
    done = [e for e in outcome.manifest.entries if e.point == ref and e.status == "done" and e.result_path]
    for e in sorted(done, key=lambda e: e.run, reverse=True):  # the newest first
        path = outcome.study_dir / e.result_path / REFERENCE_FILE
        if path.is_file() and path.stat().st_size:
            return FidelityRequest(reference=label, outputs_file=COMPARED_FILE), path
    return FidelityRequest(reference=label, missing=f"the reference '{label}' has no finished run with outputs "
                                                    f"({REFERENCE_FILE}) yet"), None

