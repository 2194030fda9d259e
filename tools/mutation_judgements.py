"""Survivors of `make mutate` judged by hand: each rule names a function (glob over mutmut's mutant name) and a
fragment of the mutated line, and says why a surviving mutant there cannot change a figure lem reports. Survivors
in unit conversions or device binding get a test that kills them instead of a rule here."""

from __future__ import annotations

import fnmatch

#: (glob over the mutant name, fragment the '+' line of the diff must contain, reason)
RULES: list[tuple[str, str, str]] = []


def judge(mutant: dict) -> str | None:
    """The reason a survivor is harmless, or None when nobody judged it."""
    added = [ln[1:] for ln in mutant.get("diff", "").splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    for pattern, fragment, reason in RULES:
        if fnmatch.fnmatch(mutant["mutant"], pattern) and any(fragment in ln for ln in added):
            return reason
    return None
