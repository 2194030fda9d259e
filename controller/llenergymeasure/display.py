"""What the user sees: live progress while the runner works, and a summary of the result.

On a terminal, a rich progress bar; elsewhere (CI, pipes), one plain line per event.
"""

from __future__ import annotations

import os
from pathlib import Path

from lem_runner.contract import ExperimentResult, LatencyStats, ProgressEvent
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def make_console() -> Console:
    """Rich console for stdout; off a terminal (CI logs, pipes) wide enough that tables do not wrap every cell."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=160)
    return console


class RunDisplay:
    """A progress sink (callable on each event) usable as a context manager."""

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.title = title
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}
        self._announced = False

    def __enter__(self) -> RunDisplay:
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=self.console, transient=True,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _bar(self, name: str, done: int, total: int) -> None:
        if self._progress is None:
            self.console.print(f"  {name} {done}/{total}")
            return
        if name not in self._tasks:
            self._tasks[name] = self._progress.add_task(name, total=total)
        self._progress.update(self._tasks[name], completed=done, total=total)

    def __call__(self, event: ProgressEvent) -> None:
        if not self._announced:  # only once a runner speaks: a config refused before it starts prints one line
            self._announced = True
            self.console.print(f"[bold]lem[/] {escape(self.title)}")
        if event.event in ("warmup", "progress") and event.done is not None and event.total:
            self._bar("warmup" if event.event == "warmup" else "measuring", event.done, event.total)
        elif event.event == "error":
            self.console.print(f"  [red]runner error:[/] {escape(event.message)}")
        elif event.event in ("started", "model_loaded", "measured"):
            self.console.print(f"  {event.event.replace('_', ' ')}: {escape(event.message)}")


def _latency(stats: LatencyStats | None) -> str:
    if stats is None:
        return "not measured"
    return (
        f"mean {stats.mean_ms:.2f} ms · p50 {stats.p50_ms:.2f} · p90 {stats.p90_ms:.2f} · p99 {stats.p99_ms:.2f}"
        f"  (n={stats.n})"
    )


def render_summary(console: Console, result: ExperimentResult, exp_dir: Path) -> None:
    d = result.backend_details
    table = Table(title=f"Result · {result.experiment_id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("model", escape(result.config.model))
    table.add_row("backend", f"{result.config.backend} · {d.get('device')} · {d.get('dtype')} · batch {d.get('batch_size')}")
    table.add_row("requests", f"{result.n_requests} · tokens in {result.input_tokens} / out {result.output_tokens}")
    table.add_row("throughput", f"{result.avg_tokens_per_second:.1f} output tok/s over a {result.total_inference_time_sec:.2f} s window")
    table.add_row("TTFT", _latency(result.ttft))
    table.add_row("ITL", _latency(result.itl))
    if result.total_energy_j is None:
        table.add_row("energy", f"null — {escape(result.energy.unavailable_reason or '')}")
        table.add_row("energy/token", "null (no energy measured)")
    else:
        table.add_row("energy", f"{result.total_energy_j:.3f} J ({result.energy.sampler}: {result.energy.method})")
        table.add_row("energy/token", f"{result.avg_energy_per_token_j * 1000:.4f} mJ per output token (raw)")
    if result.total_flops is not None:
        table.add_row("FLOPs", f"{result.total_flops:.3e} (2 × N_compute × tokens)")
    table.add_row("timing", f"model load {result.model_load_sec:.1f} s · warmup {result.warmup_batches} batch(es), excluded")
    image = result.environment.image
    where = f"container from image {image.removeprefix('sha256:')[:12]}" if image else "local process"
    table.add_row("ran in", where)
    table.add_row("result", str(exp_dir / "result.json"))
    for w in result.warnings:
        table.add_row("[yellow]warning[/]", escape(w))
    console.print(table)


def render_comparison(console: Console, outcomes, study_dir: Path, n_cycles: int = 1, aggregates=(),
                      warnings=()) -> None:
    """One row per experiment of a study, side by side; with several cycles, one row per point: mean ± ci95 over
    its successful cycles (``aggregates``), then the CV ``warnings``."""
    if n_cycles > 1:
        table = Table(title=f"Study · {study_dir.name} · {n_cycles} cycles (mean ± 95 % CI)", title_justify="left")
        for col in ("experiment", "backend", "tok/s", "TTFT p50 ms", "ITL p50 ms", "J/token", "n ok/total"):
            table.add_column(col, justify="left" if col in ("experiment", "backend") else "right")

        def cell(stats, fmt: str) -> str:
            if stats.mean is None:
                return "null"
            return f"{stats.mean:{fmt}}" + (f" ± {stats.ci95:{fmt}}" if stats.ci95 is not None else "")

        reasons = set()
        for a in aggregates:
            m = a.metrics
            reasons.add(a.energy_unavailable_reason)
            n_total = a.n_ok + a.n_failed
            ok = f"{a.n_ok}/{n_total}" if not a.n_failed else f"[red]{a.n_ok}/{n_total}[/]"
            table.add_row(escape(a.label), escape(a.backend), cell(m["tokens_per_second"], ".1f"),
                          cell(m["ttft_p50_ms"], ".1f"), cell(m["itl_p50_ms"], ".2f"),
                          cell(m["energy_per_token_j"], ".4g"), ok)
        console.print(table)
        for o in outcomes:
            if not o.ok:
                console.print(f"  [red]failed[/] {escape(o.point.label)} cycle {o.cycle}: {escape(o.error or '')}")
        for reason in sorted(x for x in reasons if x):
            console.print(f"  J/token null: {escape(reason)}")
        for warning in warnings:
            console.print(f"  [yellow]warning[/] {escape(warning)}")
        console.print(f"  summary: {study_dir / 'study_summary.json'} · {study_dir / 'study_summary.csv'}")
        return
    table = Table(title=f"Study · {study_dir.name}", title_justify="left")
    for col in ("experiment", "backend", "runner", "tok/s", "TTFT p50", "ITL p50", "J/token", "FLOPs", "status"):
        table.add_column(col, justify="right" if col in ("tok/s", "TTFT p50", "ITL p50", "FLOPs") else "left")
    reasons = set()
    for o in outcomes:
        r = o.result
        if r is None:
            table.add_row(escape(o.point.label), o.point.config.backend, o.runner, "", "", "", "", "",
                          f"[red]failed[/]: {escape(o.error or '')}")
            continue
        if r.avg_energy_per_token_j is None:
            reasons.add(r.energy.unavailable_reason)
        table.add_row(
            escape(o.point.label), r.config.backend, o.runner, f"{r.avg_tokens_per_second:.1f}",
            f"{r.ttft.p50_ms:.1f} ms" if r.ttft else "—", f"{r.itl.p50_ms:.2f} ms" if r.itl else "—",
            f"{r.avg_energy_per_token_j:.4g}" if r.avg_energy_per_token_j is not None else "null",
            f"{r.total_flops:.3g}" if r.total_flops else "—", "[green]done[/]",
        )
    console.print(table)
    for reason in sorted(x for x in reasons if x):
        console.print(f"  J/token null: {escape(reason)}")
    console.print(f"  summary: {study_dir / 'study_summary.json'}")
