"""One way to reach the Docker engine, with a clear message when it cannot be reached."""

from __future__ import annotations

from llenergymeasure.errors import SetupError


def docker_client():
    """A docker SDK client that has answered a ping."""
    try:
        import docker
    except ImportError:
        raise SetupError("the docker SDK is not installed: pip install docker") from None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        raise SetupError(
            f"no Docker engine answers ({type(exc).__name__}); start one (`make docker-up`) or check DOCKER_HOST"
        ) from None
    return client
