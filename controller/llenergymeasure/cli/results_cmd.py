"""`lem results list|show|compare|export|plot`: what a person does with results after a run. Bad input (a missing
folder, a file that is not a result) is one line and exit 2, like a bad config."""

from __future__ import annotations

from pathlib import Path

import typer

from llenergymeasure.display import make_console

app = typer.Typer(help="List, show, compare, export and plot results.", no_args_is_help=True)


@app.command("list")
def list_(directory: Path = typer.Argument(Path("results"), metavar="[DIR]", help="Results directory.")) -> None:
    """One line per experiment (study runs included): model, backend, settings, tok/s, J/token, when."""
    from llenergymeasure.results.discover import find_experiments
    from llenergymeasure.results.listing import list_lines

    for line in list_lines(find_experiments(directory)):
        typer.echo(line)


@app.command("show")
def show(path: Path = typer.Argument(..., help="Experiment folder or its result.json.")) -> None:
    """The full record, grouped: energy (method, baseline, warnings), windows, phases, latency, FLOPs, environment."""
    from llenergymeasure.results.discover import experiment_from_arg
    from llenergymeasure.results.show import render_experiment

    render_experiment(make_console(), experiment_from_arg(path))


@app.command("compare")
def compare(paths: list[Path] = typer.Argument(..., help="Experiment folders, result.json files or study folders.")
            ) -> None:
    """Side by side with relative differences from the first; a study gives mean ± 95 % CI per point."""
    from llenergymeasure.results.compare import collect
    from llenergymeasure.results.compare_view import render_comparison

    render_comparison(make_console(), collect(paths))


@app.command("export")
def export(
    directory: Path = typer.Argument(..., help="Results directory."),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv | parquet | jsonl"),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default: lem_results.<format>)."),
) -> None:
    """One row per experiment (flat columns, units in the names); the power timeseries, where kept, beside it."""
    from llenergymeasure.results.export import export_results
    from llenergymeasure.safety import resolve_output

    for path in export_results(directory, fmt, resolve_output(output, folder=False) if output else None):
        typer.echo(f"wrote {path}")


@app.command("plot")
def plot(
    directory: Path = typer.Argument(..., help="Results directory."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Folder for the PNGs (default: DIR/plots)."),
    adjusted: bool = typer.Option(False, "--adjusted", help="Idle-adjusted J/token instead of raw."),
) -> None:
    """efficiency.png (J/token vs tok/s, Pareto front, CI error bars) and power-<run>.png per kept timeseries."""
    from llenergymeasure.results.plot import plot_results
    from llenergymeasure.safety import resolve_output

    for f in plot_results(directory, resolve_output(output) if output else None, adjusted):
        typer.echo(f"wrote {f.path}  ({f.xlabel} × {f.ylabel})")

