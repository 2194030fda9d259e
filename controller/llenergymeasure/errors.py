"""Errors a user can act on, each with its own exit code. The CLI prints their message as one line, no traceback."""

from __future__ import annotations


class LemError(Exception):
    """Base of every error the CLI reports as a single line."""

    exit_code = 1


class ConfigError(LemError):
    """The config (or a file or flag it names) is invalid: names the file and the field."""

    exit_code = 2


class RunFailed(LemError):
    """The runner ran but produced no result; ``error_file`` holds its error.json when it wrote one. ``reason`` is a
    short code a study records: timeout, silence, runner_error, crashed or corrupt_result."""

    exit_code = 1

    def __init__(self, message: str, error_file: str | None = None, log_file: str | None = None,
                 reason: str = "crashed") -> None:
        super().__init__(message)
        self.error_file = error_file
        self.log_file = log_file
        self.reason = reason


class SetupError(LemError):
    """The machine is not ready for the run (no Docker engine, image missing or stale): says how to fix it."""

    exit_code = 3


class Interrupted(LemError):
    """The user interrupted the run (Ctrl-C)."""

    exit_code = 130
