"""A study with ``quality.reference``: its reference point runs first, writes its outputs into its run folder
(lem_runner.contract.quality.REFERENCE_FILE), and every later run is handed the newest of them in its request, so
the runner compares without opening a host file (docs/method.md, "Output fidelity")."""

from __future__ import annotations

from lem_runner.contract.quality import REFERENCE_FILE, FidelityRequest, ReferenceOutputs
from pydantic import ValidationError


def reference_first(outcome, pending: list) -> list:
    """``pending`` with the reference's first run moved to the front while the reference has no finished run."""
    ref = outcome.reference
    if ref is None or any(e.point == ref and e.status == "done" for e in outcome.manifest.entries):
        return pending
    first = next((e for e in pending if e.point == ref), None)
    return pending if first is None else [first, *(e for e in pending if e is not first)]


def fidelity_request(outcome, entry) -> FidelityRequest | None:
    """What the run ``entry`` is told: it is the reference, or the reference's newest outputs, or why none."""
    ref = outcome.reference
    if ref is None:
        return None
    label = outcome.points[ref].label
    if entry.point == ref:
        return FidelityRequest(reference=label, is_reference=True)
    done = [e for e in outcome.manifest.entries if e.point == ref and e.status == "done" and e.result_path]
    for e in sorted(done, key=lambda e: e.run, reverse=True):  # the newest first
        path = outcome.study_dir / e.result_path / REFERENCE_FILE
        try:
            outputs = ReferenceOutputs.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, ValidationError):
            continue
        return FidelityRequest(reference=label, outputs=outputs)
    return FidelityRequest(reference=label, missing=f"the reference '{label}' has no finished run with outputs "
                                                    f"({REFERENCE_FILE}) yet")
