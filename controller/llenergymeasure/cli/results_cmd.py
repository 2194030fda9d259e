"""`lem results list|show|compare|export|plot|report|best`: what a person does with results after a run. Bad input (a missing
folder, a file that is not a result) is one line and exit 2, like a bad config."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer
from lem_runner.contract import backend_names

from llenergymeasure.render.console import make_console

app = typer.Typer(help="List, show, compare, export, plot and report results, and pick the best operating point.", no_args_is_help=True)


GRID_HELP = "Grid carbon intensity, gCO2e/kWh: emissions from measured energy (replaces the config's carbon:)."
PUE_HELP = "Power usage effectiveness applied with --grid-intensity (default 1.0)."


def _carbon(grid_intensity: float | None, pue: float | None):
    from llenergymeasure.results.carbon import carbon_option

    return carbon_option(grid_intensity, pue)


@app.command("list")
def list_(directory: Path = typer.Argument(Path("results"), metavar="[DIR]", help="Results directory."),
          sort: str = typer.Option("time", "--sort", help="time (newest first) | name | throughput | energy"),
          backend: str | None = typer.Option(None, "--backend", help=f"Only this backend ({', '.join(backend_names())})."),
          model: str | None = typer.Option(None, "--model", help="Only models whose name contains this."),
          since: str | None = typer.Option(None, "--since", help="Only runs started since: 2025-01-31, 2h, 3d.")
          ) -> None:
    """One line per experiment (study runs included): when, model, backend, settings, tok/s, J/token, status."""
    from llenergymeasure.render.listing import list_lines
    from llenergymeasure.results.discover import find_experiments
    from llenergymeasure.results.listing import parse_since, select

    after = parse_since(since) if since else None
    experiments = select(find_experiments(directory), sort, backend, model, after)
    if not experiments:
        typer.echo(f"{directory}: no experiment matches the filters", err=True)
    for line in list_lines(experiments, shutil.get_terminal_size((160, 24)).columns):
        typer.echo(line)


@app.command("show")
def show(path: Path = typer.Argument(..., help="Experiment folder, its result.json, or a study folder."),
         grid_intensity: float | None = typer.Option(None, "--grid-intensity", help=GRID_HELP),
         pue: float | None = typer.Option(None, "--pue", help=PUE_HELP)) -> None:
    """The full record, grouped: energy (method, baseline, warnings), windows, phases, latency, FLOPs, environment.
    A study folder: its status, one line per point (mean ± 95 % CI) and its warnings."""
    from llenergymeasure.render.experiment import render_experiment
    from llenergymeasure.render.study import render_study_folder
    from llenergymeasure.results.carbon import with_carbon
    from llenergymeasure.results.discover import experiment_from_arg, is_experiment_dir, is_study_dir

    carbon = _carbon(grid_intensity, pue)
    if path.is_dir() and is_study_dir(path) and not is_experiment_dir(path):
        render_study_folder(make_console(), path, carbon)
        return
    (experiment,) = with_carbon([experiment_from_arg(path)], carbon)
    render_experiment(make_console(), experiment)


@app.command("compare")
def compare(paths: list[Path] = typer.Argument(..., help="Experiment folders, result.json files or study folders."),
            grid_intensity: float | None = typer.Option(None, "--grid-intensity", help=GRID_HELP),
            pue: float | None = typer.Option(None, "--pue", help=PUE_HELP)) -> None:
    """Side by side with relative differences from the first; a study gives mean ± 95 % CI per point."""
    from llenergymeasure.render.compare import render_comparison
    from llenergymeasure.results.compare import collect

    render_comparison(make_console(), collect(paths, _carbon(grid_intensity, pue)))


@app.command("export")
def export(
    directory: Path = typer.Argument(..., help="Results directory."),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv | parquet | jsonl"),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default: lem_results.<format>)."),
    grid_intensity: float | None = typer.Option(None, "--grid-intensity", help=GRID_HELP),
    pue: float | None = typer.Option(None, "--pue", help=PUE_HELP),
) -> None:
    """One row per experiment (flat columns, units in the names); the power timeseries, where kept, beside it."""
    from llenergymeasure.results.export import export_results
    from llenergymeasure.results.output_path import resolve_output

    for path in export_results(directory, fmt, resolve_output(output, folder=False) if output else None,
                               _carbon(grid_intensity, pue)):
        typer.echo(f"wrote {path}")


@app.command("plot")
def plot(
    directory: Path = typer.Argument(..., help="Results directory."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Folder for the figures (default: DIR/plots)."),
    adjusted: bool = typer.Option(False, "--adjusted", help="Idle-adjusted J/token instead of raw."),
    fmt: str = typer.Option("png", "--format", "-f", help="png | svg | pdf (vector)"),
) -> None:
    """efficiency.png (J/token vs tok/s, Pareto front, CI error bars) and power-<run>.png per kept timeseries."""
    from llenergymeasure.results.output_path import resolve_output
    from llenergymeasure.results.plot import plot_results

    for f in plot_results(directory, resolve_output(output) if output else None, adjusted, fmt):
        line = f"wrote {f.path}  ({f.xlabel} × {f.ylabel})"
        width = shutil.get_terminal_size((160, 24)).columns
        # the path whole on its line; the axes under it when both do not fit the terminal
        typer.echo(line if len(line) <= width else f"wrote {f.path}\n  axes: {f.xlabel} × {f.ylabel}")


@app.command("best")
def best(
    directory: Path = typer.Argument(..., help="Study folder or results directory."),
    ttft_p50_ms: float | None = typer.Option(None, "--ttft-p50-ms", help="Target: TTFT p50 at most this (ms)."),
    ttft_p99_ms: float | None = typer.Option(None, "--ttft-p99-ms", help="Target: TTFT p99 at most this (ms)."),
    tpot_p50_ms: float | None = typer.Option(None, "--tpot-p50-ms",
                                             help="Target: time per output token after the first (TPOT) p50 (ms)."),
    tpot_p99_ms: float | None = typer.Option(None, "--tpot-p99-ms", help="Target: TPOT p99 at most this (ms)."),
    itl_p50_ms: float | None = typer.Option(None, "--itl-p50-ms",
                                            help="Target: inter-token latency (gap between steps/chunks) p50 (ms)."),
    itl_p99_ms: float | None = typer.Option(None, "--itl-p99-ms", help="Target: inter-token latency p99 (ms)."),
    max_kl: float | None = typer.Option(None, "--max-kl", min=0,
                                        help="Bound: KL from the study's reference at most this (nats/token)."),
    min_accuracy: float | None = typer.Option(None, "--min-accuracy", min=0, max=1,
                                              help="Bound: task accuracy (quality.task) at least this (0-1)."),
    adjusted: bool = typer.Option(False, "--adjusted", help="Rank by idle-adjusted J/token instead of raw."),
) -> None:
    """The lowest-energy configuration (e.g. GPU power limit / clock) whose latency meets the targets and whose
    quality keeps within the bounds; exit 1 if none."""
    from llenergymeasure.results.operating_points import best_in, describe_best

    targets = {k: v for k, v in (("ttft_p50_ms", ttft_p50_ms), ("ttft_p99_ms", ttft_p99_ms),
                                 ("tpot_p50_ms", tpot_p50_ms), ("tpot_p99_ms", tpot_p99_ms),
                                 ("itl_p50_ms", itl_p50_ms), ("itl_p99_ms", itl_p99_ms)) if v is not None}
    bounds = {k: v for k, v in (("fidelity_kl_mean_nats", max_kl), ("task_accuracy", min_accuracy)) if v is not None}
    for line in describe_best(best_in(directory, targets, adjusted, bounds), targets, adjusted, bounds):
        typer.echo(line)

@app.command("report")
def report(
    directory: Path = typer.Argument(..., help="Results directory (a study folder, or a folder of runs and studies)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="HTML file to write (default: DIR/report.html)."),
    grid_intensity: float | None = typer.Option(None, "--grid-intensity", help=GRID_HELP),
    pue: float | None = typer.Option(None, "--pue", help=PUE_HELP),
) -> None:
    """One self-contained HTML file (no network): study tables, efficiency and power figures, environment, method
    notes and warnings."""
    from llenergymeasure.render.report import write_report

    typer.echo(f"wrote {write_report(directory, output, _carbon(grid_intensity, pue))}")
