"""Choose how to start the runner: ``runner:`` in the config, ``--isolated`` on the command line, or auto."""

from __future__ import annotations

from lem_runner.contract import ExperimentConfig

from llenergymeasure.errors import ConfigError
from llenergymeasure.host.inventory import backend_installed
from llenergymeasure.launchers.base import Launcher


def select_launcher(config: ExperimentConfig, isolated: bool = False, image: str | None = None) -> Launcher:
    """``--isolated``/``docker``/``docker:<image>`` → container; ``local`` → subprocess; ``slurm`` → a Slurm job; ``auto`` → local when the
    backend's libraries are installed here, else a container (auto-isolation). A serving run against a user's endpoint
    is always local (it needs no engine, and a container has no network to reach the endpoint)."""
    from llenergymeasure.launchers.local import LocalLauncher

    runner = config.runner
    if runner == "slurm":
        from llenergymeasure.launchers.slurm import SlurmLauncher

        return SlurmLauncher()
    wants_container = isolated or image or runner.startswith("docker")
    if config.scenario == "serving" and config.serving.endpoint is not None:
        if wants_container:
            raise ConfigError("serving.endpoint: lem reaches your server over this host's loopback, but an isolated "
                              "run has no network; run it without --isolated (runner: local or auto)")
        return LocalLauncher()  # the engine is the user's server: the runner needs only its HTTP client here
    if not wants_container and (runner == "local" or backend_installed(config.backend)):
        return LocalLauncher()
    # imported only here: a local run needs no docker SDK
    from llenergymeasure.launchers.docker import DockerLauncher

    if runner.startswith("docker:"):
        return DockerLauncher(image=image or runner.removeprefix("docker:"))
    return DockerLauncher(image=image)
