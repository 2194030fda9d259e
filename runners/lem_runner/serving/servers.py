"""The serving scenario's view of the backends' servers: each backend's ``server.py`` builds its command
(backends/<name>/server.py, named by its spec); this module only re-exports what serving uses."""

from lem_runner.backends.server import SERVED_NAME, ServerCommand, server_command

__all__ = ["SERVED_NAME", "ServerCommand", "server_command"]
