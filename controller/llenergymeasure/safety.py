"""Checks made before anything runs or is written, each failing as one line with the flag or field it is about.

The output rule, the same for every command that writes (``lem run -o``, ``results export/plot -o``, ``config
schema/reference -o``): the path the user names is resolved (``..`` and symbolic links followed, as a shell would:
``-o ../results`` and a results folder that is a link to scratch space are both fine), and lem then writes only
inside the folder it resolved to: one new folder per experiment or study, created exclusively, so nothing already
there is overwritten or followed. Refused, with exit 2 and before anything is written, is only what cannot be
resolved to a place: a symbolic link loop, or a link that points nowhere (following it would create its target,
somewhere the user did not name), and a path that is a file where a folder is needed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from llenergymeasure.errors import ConfigError

#: the most points (combinations of sweep values and explicit experiments) one study may expand to
MAX_STUDY_POINTS = 10_000


def resolve_output(output: Path, flag: str = "--output", folder: bool = True) -> Path:
    """``output`` resolved by the rule above (``folder=False``: a file to write, whose folder is checked), else
    ConfigError naming ``flag``."""
    path = output.expanduser()
    for i in range(1, len(path.parts) + 1):
        part = Path(*path.parts[:i])
        try:
            dangling = part.is_symlink() and not part.exists()
        except (OSError, ValueError):
            dangling = False
        if dangling:
            try:
                part.resolve(strict=True)
            except RuntimeError:
                raise ConfigError(f"{flag}: '{part}' is a symbolic link loop") from None
            except OSError:
                pass
            raise ConfigError(f"{flag}: '{part}' is a symbolic link to '{os.readlink(part)}', which does not exist; "
                              "create the folder it points to, or name another") from None
    try:
        resolved = path.resolve()
    except (RuntimeError, OSError) as exc:
        raise ConfigError(f"{flag}: '{output}' cannot be resolved ({exc})") from None
    target = resolved if folder else resolved.parent
    existing = next(p for p in [target, *target.parents] if p.exists())  # the nearest folder that is there
    if not existing.is_dir():
        where = "is a file" if existing == resolved else f"is under '{existing}', a file"
        raise ConfigError(f"{flag}: '{output}' {where}, not a folder")
    return resolved


def check_output_dir(output: Path) -> Path:
    """The results folder ``--output`` names, resolved (see the module's rule)."""
    return resolve_output(output, "--output")


def check_sweep_size(study, source: str) -> None:
    """Refuse a study whose sweep would expand to more than MAX_STUDY_POINTS points (before expanding it)."""
    sizes = [len(values) for values in [*study.sweep.values(), *getattr(study, "groups", {}).values()]]
    n = max(1, len(study.experiments)) * math.prod(sizes)
    if n > MAX_STUDY_POINTS:
        axes = " x ".join(str(size) for size in sizes) or "1"
        raise ConfigError(f"{source}: sweep: {axes} values over {max(1, len(study.experiments))} experiment(s) make "
                          f"{n:.3g} points; a study may have at most {MAX_STUDY_POINTS:,}")
