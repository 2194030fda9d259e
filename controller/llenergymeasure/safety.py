"""Checks made before anything runs or is written, each failing as one line with the flag or field it is about.

The output rule: ``--output`` names the results directory, and lem writes only inside it (one new folder per
experiment or study, created exclusively, so nothing already there is overwritten or followed). It refuses, with
exit 2 and before writing anything:

- an output path with a ``..`` component (``-o ../../etc``): where it lands depends on the current folder and
  on symbolic links along the way, so say it without ``..`` (an absolute path is fine);
- an output path any component of which is a symbolic link (as written, counted from the current folder for a
  relative path): the results would land somewhere other than the folder named; name the real folder instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from llenergymeasure.errors import ConfigError

#: the most points (combinations of sweep values and explicit experiments) one study may expand to
MAX_STUDY_POINTS = 10_000


def check_output_dir(output: Path) -> Path:
    """``output`` itself when it follows the rule above, else ConfigError naming ``--output``."""
    text = str(output)
    if ".." in output.parts:
        raise ConfigError(f"--output: '{text}' goes up a folder with '..'; name the results folder without '..' "
                          "(an absolute path is fine)")
    for i in range(1, len(output.parts) + 1):
        part = Path(*output.parts[:i])
        try:
            is_link = part.is_symlink()
        except (OSError, ValueError):
            is_link = False
        if is_link:
            raise ConfigError(f"--output: '{part}' is a symbolic link; results go only into the folder named, "
                              "so name the real folder instead")
    return output


def check_sweep_size(study, source: str) -> None:
    """Refuse a study whose sweep would expand to more than MAX_STUDY_POINTS points (before expanding it)."""
    n = max(1, len(study.experiments)) * math.prod(len(values) for values in study.sweep.values())
    if n > MAX_STUDY_POINTS:
        axes = " x ".join(str(len(v)) for v in study.sweep.values()) or "1"
        raise ConfigError(f"{source}: sweep: {axes} values over {max(1, len(study.experiments))} experiment(s) make "
                          f"{n:.3g} points; a study may have at most {MAX_STUDY_POINTS:,}")


def preflight_containers(configs: Iterable, isolated: bool) -> None:
    """Before a study starts: if any run goes to a container, the engine must answer and each image must be present
    and speak this controller's contract (SetupError, exit 3, naming the fix) — rather than every run failing."""
    from llenergymeasure.launchers.select import select_launcher

    checked: set[tuple] = set()
    for config in configs:
        launcher = select_launcher(config, isolated=isolated)
        if launcher.name != "docker":
            continue
        key = (launcher.image, config.backend, config.device)
        if key not in checked:
            launcher.check(config)
            checked.add(key)
