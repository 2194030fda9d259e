"""`lem`: the command-line entry point. User mistakes end as one line on stderr with a distinct exit code:
0 ok, 1 run failed, 2 bad config or usage, 3 machine not ready (Docker, images), 130 interrupted."""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console
from rich.markup import escape

from llenergymeasure import __version__
from llenergymeasure.cli import config_cmd, doctor_cmd, images_cmd, results_cmd, run_cmd
from llenergymeasure.errors import LemError

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


def main(argv: list[str] | None = None) -> int:
    err = Console(stderr=True, highlight=False)
    try:
        code = app(args=argv, standalone_mode=False)
    except LemError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        err.print("[bold red]interrupted[/]")
        return 130
    except KeyboardInterrupt:
        err.print("[bold red]interrupted[/]")
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
