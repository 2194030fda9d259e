"""Headless Chromium for tests that render HTML the way a reader's browser does. Outside CI a machine without it
skips those tests; in CI (the CI variable set) a missing Chromium fails them: `make chromium` installs it."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("CI: headless Chromium is not installed (`make chromium` installs Debian's chromium)")
    pytest.skip("headless Chromium not installed (`make chromium`)")


@dataclass(frozen=True)
class Rendered:
    dom: str
    console: list[str]  # the page's console messages (errors, warnings, logs), as Chromium logged them
    screenshot: Path


def render(page: Path, workdir: Path, width: int = 1280, height: int = 2400, timeout: float = 120) -> Rendered:
    """Load ``page`` (a local file) in headless Chromium: its DOM after load, its console messages and a PNG."""
    exe = chromium_path()
    base = [exe, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
            f"--user-data-dir={workdir / 'profile'}", "--no-first-run", f"--window-size={width},{height}"]
    url = page.resolve().as_uri()
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=timeout)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = workdir / f"{page.stem}.png"
    snap = subprocess.run([*base, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=timeout)
    assert snap.returncode == 0 and shot.is_file(), snap.stderr[-2000:]
    console = [line for line in (dom.stderr + snap.stderr).splitlines() if ":CONSOLE" in line]
    return Rendered(dom.stdout, console, shot)
