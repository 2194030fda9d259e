"""Where lem keeps what it makes once and reuses: converted models, wheels, image build contexts."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """lem's cache folder: $LEM_CACHE_DIR (the Makefile's test targets point it inside the clone), else
    ~/.cache/llenergymeasure (the demos use it, as `.venv/bin/lem` does)."""
    env = os.environ.get("LEM_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "llenergymeasure"
