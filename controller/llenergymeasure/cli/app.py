"""`lem`: the command-line entry point. User mistakes end as one line on stderr with a distinct exit code:
0 ok, 1 run failed, 2 bad config or usage, 3 machine not ready (Docker, images), 130 interrupted."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

import click
import typer
from rich.console import Console
from rich.markup import escape

from llenergymeasure.cli import config_cmd, doctor_cmd, images_cmd, results_cmd, run_cmd
from llenergymeasure.errors import LemError
from llenergymeasure.version import __version__


def _flags_without_a_type() -> None:
    """typer's rich help prints '<bool>' after every flag (its plain help does not): a flag takes no value, so show
    none; and a number range's bounds go into the option's description, not the type column. Only the help text
    changes."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_lem", False):
        return

    def display_type_rich(self, ctx):
        if self.is_flag:
            return None
        shown_type = shown(self, ctx)
        return shown_type.replace(" range", "") if isinstance(shown_type, str) else shown_type

    display_type_rich._lem = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
    # a range ('<float range> [x>=0]') widens the type column for every option, squeezing each description to a
    # few words at 80 columns: the option's help states its range in words instead
    TyperOption._get_number_range_help_str = lambda self: ""  # type: ignore[method-assign]


_flags_without_a_type()

app = typer.Typer(
    name="lem",
    help="Measure the energy and efficiency of LLM inference.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("run")(run_cmd.run)
app.add_typer(config_cmd.app, name="config")
app.add_typer(images_cmd.app, name="images")
app.add_typer(results_cmd.app, name="results")
app.command("doctor")(doctor_cmd.doctor)


def _version(value: bool) -> None:
    if value:
        print(f"lem {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Measure the energy and efficiency of LLM inference."""


_MAX_LINE = 1000
#: exit status after the reader of our stdout went away, as a process killed by SIGPIPE reports it in a shell
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def _click_classes(name: str) -> tuple[type, ...]:
    """``click.<name>`` and typer's vendored copy of it (typer >= 0.2x raises its own click classes)."""
    classes = [getattr(click.exceptions, name)]
    try:
        from typer._click import exceptions as vendored

        classes.append(getattr(vendored, name))
    except (ImportError, AttributeError):
        pass
    return tuple(classes)


_USAGE_ERRORS = _click_classes("UsageError")
_CLICK_ERRORS = _click_classes("ClickException")
_CLICK_EXITS = _click_classes("Exit")
_ABORTS = _click_classes("Abort")


def one_line(message: str) -> str:
    """A message as one printable line: control characters (newlines from a file name or a value) shown escaped,
    undecodable bytes from a path shown as escapes, and the whole capped in length."""
    text = message.encode("utf-8", "backslashreplace").decode("utf-8")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= _MAX_LINE else text[: _MAX_LINE - 1] + "…"


def _stop_signal(signum, frame) -> None:
    """SIGTERM and SIGHUP outside a run's progress loop (which stops its runner gracefully itself): unwind like
    Ctrl-C, so nothing is left half-written."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _quiet_broken_stdout() -> None:
    """After `lem … | head` closed our stdout, point it at /dev/null so exiting does not print a BrokenPipeError."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    old = {}
    if threading.current_thread() is threading.main_thread():
        old = {sig: signal.signal(sig, _stop_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return _main(argv)
    finally:
        _quiet_broken_stdout()
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _main(argv: list[str] | None) -> int:
    err = Console(stderr=True, highlight=False)

    def say(prefix: str, message: str) -> None:
        err.print(f"[bold red]{prefix}[/] {escape(one_line(message))}", soft_wrap=True)

    try:
        code = app(args=argv, standalone_mode=False)
    except LemError as exc:
        say("error:", str(exc))
        return exc.exit_code
    except _CLICK_EXITS as exc:
        return exc.exit_code
    except _USAGE_ERRORS as exc:  # one line, not click's usage block
        command = exc.ctx.command_path if exc.ctx is not None else "lem"
        if exc.format_message():  # (empty when the help was shown for a bare `lem`)
            say("error:", f"{exc.format_message()} (see {command} --help)")
        return exc.exit_code
    except _CLICK_ERRORS as exc:
        say("error:", exc.format_message())
        return exc.exit_code
    except (*_ABORTS, KeyboardInterrupt):
        err.print("[bold red]interrupted[/]")
        return 130
    except BrokenPipeError:  # `lem … | head` closed our stdout: stop quietly, as Unix tools do (128 + SIGPIPE)
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # a full disk, a vanished folder: the cause, not a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        say("error:", f"{exc.strerror or type(exc).__name__}{where}; nothing was lost that was already written")
        return 1
    except Exception as exc:  # a bug: one line here, the traceback in a file (LEM_DEBUG=1 raises it instead)
        if os.environ.get("LEM_DEBUG"):
            raise
        say("internal error:", f"{type(exc).__name__}: {exc} (traceback: {_save_traceback()}; please report it)")
        return 1
    return code if isinstance(code, int) else 0


def _save_traceback() -> str:
    import tempfile
    import traceback

    try:
        fd, path = tempfile.mkstemp(prefix="lem-crash-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            traceback.print_exc(file=fh)
        return path
    except OSError:
        return "not saved"


if __name__ == "__main__":
    sys.exit(main())
