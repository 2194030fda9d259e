"""Launchers start a runner on an exchange directory: as a local subprocess or inside a container."""

from llenergymeasure.launchers.base import Launcher, LaunchOutcome, LaunchSpec, Timeouts

__all__ = ["LaunchOutcome", "LaunchSpec", "Launcher", "Timeouts"]
