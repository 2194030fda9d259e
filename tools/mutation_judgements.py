"""Survivors of `make mutate` judged by hand: each rule names the functions it covers (a glob over mutmut's mutant
name), a pattern the removed line and one the added line must match, and why such a survivor cannot change a
figure lem reports. Survivors in unit conversions or device binding get a test that kills them, never a rule here;
the rules below therefore exclude lem_runner.devices and the conversions (``/ 1000``, ``* 1000``, ``/ step``)."""

from __future__ import annotations

import fnmatch
import re

#: lines that hold a message or a description, not a value (source names, config keys and dict keys are values)
_MESSAGE = (r"(raise |Error\(|errors\.append|warnings\.append|unavailable_reason = |spread = |method=f?\"|"
            r"NullEnergySource\(|_chosen\(|notify\(|done\.append\(|return (None, )?f?\"|^\"[^\"]* [^\"]*\"\)?$|^f\"[^\"]* [^\"]*\"\)?$)")

#: (glob over the mutant name, regex the removed line matches, regex the added line matches, reason)
RULES: list[tuple[str, str, str, str]] = [
    ("lem_runner.energy.*", r'encoding="utf-8"', r'encoding=(None|"UTF-8")',
     "the file's text is ASCII (sysfs numbers, lem's own JSON): any encoding Python accepts reads it the same"),
    ("*", r"Thread\(.*name=", r'name=(None|"XX|"LEM-)|Thread\(target=self\._run, daemon',
     "the sampler thread's name appears in no figure or file; only in a debugger's thread list"),
    ("llenergymeasure.gpustate.device.*", r'self\._call\("nvml',
     r'self\._call\((None|"XX|"nvml[a-z]+"|"NVML[A-Z]+")',
     "the NVML function's name only labels the GpuStateError's message (\"NVML <name> on GPU <id>: ...\"); what is "
     "called is the function object beside it"),
    ("llenergymeasure.gpustate.device.x_open_nvml*", r"pynvml = nvml\.init\(\)|return NvmlGpu\(gpu_id, pynvml\)",
     r"pynvml = None|NvmlGpu\(gpu_id, (None)?\)",
     "equivalent: NvmlGpu loads NVML itself (nvml.init) when handed none, raising the same GpuStateError"),
    ("*", r"daemon=True", r"daemon=(None|False)\)|name=\"lem-power-sampler\", \)",
     "stop_tracking always joins the sampler thread, so whether the interpreter would wait for it at exit never "
     "comes into play on a path that reports energy"),
]

_EXCLUDED = ("lem_runner.devices.",)  # device binding: every survivor there gets a test
_CONVERSION = re.compile(r"/ 1000|\* 1000|1e3|1e-3|/ step|\* step|2\*\*20|/ 1e6|\* 1e6")


def _changed(diff: str, sign: str) -> list[str]:
    return [ln[1:].strip() for ln in diff.splitlines() if ln.startswith(sign) and not ln.startswith(sign * 3)]


def judge(mutant: dict) -> str | None:
    """The reason a survivor is harmless, or None when nobody judged it (or it must be killed instead)."""
    name = mutant["mutant"]
    if name.startswith(_EXCLUDED):
        return None
    removed, added = _changed(mutant.get("diff", ""), "-"), _changed(mutant.get("diff", ""), "+")
    if sorted(c for ln in removed for c in _CONVERSION.findall(ln)) != \
            sorted(c for ln in added for c in _CONVERSION.findall(ln)):
        return None  # the mutant touches a conversion: a test must kill it
    pairs = list(zip(removed, added))
    if any(re.search(_MESSAGE, r) for r in removed):
        if any(a != r and (a.replace('"XX', '"').replace('XX"', '"') == r or re.fullmatch(r"raise \w+\(None\)", a))
               for r, a in pairs):
            return ("the wording of a message (an exception, a warning, an unavailable reason, a description of the "
                    "method): no figure depends on it; tests match the part that names the field or the cause")
        if any(a != r and a.lower() == r.lower() for r, a in pairs):
            return "the case of a message's words: no figure depends on it"
    for pattern, old, new, reason in RULES:
        if fnmatch.fnmatch(name, pattern) and any(re.search(old, ln) for ln in removed) \
                and any(re.search(new, ln) for ln in added):
            return reason
    return None
