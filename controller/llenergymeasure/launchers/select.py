"""Choose how to start the runner: ``runner:`` in the config, ``--isolated`` on the command line, or auto."""

from __future__ import annotations

from lem_runner.contract import ExperimentConfig

from llenergymeasure.hostinfo import backend_installed
from llenergymeasure.launchers.base import Launcher


def select_launcher(config: ExperimentConfig, isolated: bool = False, image: str | None = None) -> Launcher:
    """``--isolated``/``docker``/``docker:<image>`` → container; ``local`` → subprocess; ``auto`` → local when the
    backend's libraries are installed here, else a container (auto-isolation)."""
    from llenergymeasure.launchers.docker import DockerLauncher
    from llenergymeasure.launchers.local import LocalLauncher

    runner = config.runner
    if runner.startswith("docker:"):
        return DockerLauncher(image=image or runner.removeprefix("docker:"))
    if isolated or image or runner == "docker":
        return DockerLauncher(image=image)
    if runner == "local" or backend_installed(config.backend):
        return LocalLauncher()
    return DockerLauncher()
