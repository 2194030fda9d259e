"""What the user sees: live progress while the runner works, and a summary of the result.

On a terminal, rich progress bars (for a study, one live area: run i/N, cycle, ETA, last result, failures);
elsewhere (CI, pipes), plain lines.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from lem_runner.contract import ExperimentResult, LatencyStats, ProgressEvent
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from llenergymeasure.study.execute import StudyObserver


class _Console(Console):
    """A closed stdout (`lem run … | head`) goes quiet and raises BrokenPipeError, which stops a run gracefully
    (launchers/stream.py), instead of rich's default SystemExit(1), which would kill the runner unrecorded."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        raise BrokenPipeError("stdout closed")


def make_console() -> Console:
    """Rich console for stdout; off a terminal (CI logs, pipes) wide enough that tables do not wrap every cell."""
    console = _Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = _Console(highlight=False, width=160)
    return console


class RunDisplay:
    """A progress sink (callable on each event) usable as a context manager."""

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.title = title
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}
        self._started: dict[str, tuple[float, int]] = {}
        self._announced = False

    def __enter__(self) -> RunDisplay:
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("eta"), TimeRemainingColumn(), console=self.console, transient=True,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _bar(self, name: str, done: int, total: int) -> None:
        if self._progress is None:
            self.console.print(f"  {name} {done}/{total}{self._eta(name, done, total)}")
            return
        if name not in self._tasks:
            self._tasks[name] = self._progress.add_task(name, total=total)
        self._progress.update(self._tasks[name], completed=done, total=total)

    def _eta(self, name: str, done: int, total: int) -> str:
        """' · 12 s elapsed · eta 3 min' from the rate since this bar's first update (plain lines, off a terminal)."""
        now = time.monotonic()
        first = self._started.setdefault(name, (now, done))
        elapsed, counted = now - first[0], done - first[1]
        if counted <= 0 or elapsed <= 0:
            return ""
        left = (total - done) * elapsed / counted
        return f" · {_duration(elapsed)} elapsed · eta {_duration(left)}"

    def __call__(self, event: ProgressEvent) -> None:
        if not self._announced:  # only once a runner speaks: a config refused before it starts prints one line
            self._announced = True
            self.console.print(f"[bold]lem[/] {escape(self.title)}")
        if event.event in ("warmup", "progress") and event.done is not None and event.total:
            self._bar("warmup" if event.event == "warmup" else "measuring", event.done, event.total)
        elif event.event == "error" and event.data.get("status") == "interrupted":
            self.console.print(f"  [yellow]interrupted:[/] {escape(event.message)}")
        elif event.event == "error":
            self.console.print(f"  [red]runner error:[/] {escape(event.message)}")
        elif event.event in ("started", "model_loaded", "baseline", "measured"):
            self.console.print(f"  {event.event.replace('_', ' ')}: {escape(event.message)}")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _latency(stats: LatencyStats | None) -> str:
    if stats is None:
        return "not measured"
    return (
        f"mean {stats.mean_ms:.2f} ms · p50 {stats.p50_ms:.2f} · p90 {stats.p90_ms:.2f} · p99 {stats.p99_ms:.2f}"
        f"  (n={stats.n})"
    )


def _energy_rows(result: ExperimentResult) -> list[tuple[str, str]]:
    """Energy, raw and idle-adjusted side by side and labelled as such, then the cross-checks and the phase split."""
    e = result.energy
    if result.total_energy_j is None:
        return [("energy", f"null — {escape(e.unavailable_reason or '')}"), ("energy/token", "null (no energy measured)")]
    rows = [("energy", f"{result.total_energy_j:.3f} J raw ({e.sampler}: {escape(e.method)})")]
    if e.selected_because:
        rows.append(("source", escape(e.selected_because)))
    per_token = f"{result.avg_energy_per_token_j * 1000:.4f} mJ raw" if result.avg_energy_per_token_j is not None else "null"
    if result.avg_energy_per_token_adjusted_j is not None:
        per_token += f" · {result.avg_energy_per_token_adjusted_j * 1000:.4f} mJ idle-adjusted"
    rows.append(("energy/token", per_token + " per output token"))
    if e.baseline is not None:
        spread = f" ± {e.baseline.power_std_w:.1f}" if e.baseline.power_std_w is not None else ""
        rows.append(("idle baseline", f"{e.baseline.power_w:.1f}{spread} W ({e.baseline.source}, "
                                      f"{e.baseline.duration_s:.1f} s) → adjusted {e.adjusted_energy_j:.3f} J"))
    elif e.baseline_unavailable_reason:
        rows.append(("idle baseline", f"none — {escape(e.baseline_unavailable_reason)}"))
    if e.integrated_energy_j is not None and e.counter_vs_integrated_rel_diff is not None:
        rows.append(("cross-check", f"sampled power integrated over the total window: {e.integrated_energy_j:.3f} J "
                                    f"({e.counter_vs_integrated_rel_diff:+.1%} vs counter, {e.n_power_samples} samples "
                                    f"at {e.sample_hz:g} Hz)"))
    if e.counter_update_period_ms is not None:
        rows.append(("counter", f"updates every {e.counter_update_period_ms:.1f} ms (measured)"))
    ph = result.phases
    if ph is not None and ph.prefill.energy_j is not None and ph.decode.energy_j is not None:
        rows.append(("phases", f"prefill {ph.prefill.energy_j:.3f} J in {ph.prefill.time_s:.2f} s "
                               f"({ph.prefill.energy_share:.0%}) · decode {ph.decode.energy_j:.3f} J in "
                               f"{ph.decode.time_s:.2f} s ({ph.decode.energy_share:.0%})"))
    if e.timeseries_file:
        rows.append(("timeseries", e.timeseries_file))
    return rows


def _j(value: float | None, unit: str = "J") -> str:
    return "null" if value is None else f"{value:.4g} {unit}"


def serving_rows(result: ExperimentResult) -> list[tuple[str, str]]:
    """The serving figures on screen (definitions: docs/method.md, "Serving")."""
    s = result.serving
    if s is None:
        return []
    offered = f"{s.offered_rate_rps:g}" if s.offered_rate_rps is not None else f"closed loop, {s.clients} clients"
    achieved = f"{s.achieved_rate_rps:.2f}" if s.achieved_rate_rps is not None else "-"
    rows = [("load", f"{s.arrival}: offered {offered} req/s · achieved {achieved} · completed "
                     f"{s.completed_rate_rps:.2f} · in flight mean {s.inflight_mean:.1f} / max {s.inflight_max}"),
            ("requests ok", f"{s.n_ok} of {s.n_requests} · {s.n_errors} error(s) · {s.n_timeouts} timeout(s)"),
            ("TPOT", _latency(s.tpot)), ("E2E", _latency(s.e2e))]
    if s.n_good is not None:
        rows.append(("SLO goodput", f"{s.n_good}/{s.n_requests} met {escape(str(s.slo))} · {s.goodput_rps:.2f} req/s"
                                    f" · J per good output token {_j(s.energy_per_good_token_j)}"))
    if s.energy_per_request is not None:
        e = s.energy_per_request
        rows.append(("J/request", f"mean {e.mean_j:.4g} · p50 {e.p50_j:.4g} · p90 {e.p90_j:.4g} J · idle "
                                  f"{_j(s.idle_energy_j)} over {s.idle_time_s:.2f} s"))
    rows.append(("server", f"{escape(s.server)} · ready in "
                           f"{'-' if s.server_start_s is None else f'{s.server_start_s:.1f} s'} (outside the window)"))
    return rows


def render_summary(console: Console, result: ExperimentResult, exp_dir: Path) -> None:
    d = result.backend_details
    table = Table(title=f"Result · {result.experiment_id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("model", escape(result.config.model))
    table.add_row("backend", f"{result.config.backend} · {d.get('device')} · {d.get('dtype')} · batch {d.get('batch_size')}")
    run = result.whole_run
    table.add_row("whole run", f"{run.n_requests} requests · tokens in {run.input_tokens} / out {run.output_tokens} "
                               f"in {run.duration_s:.2f} s")
    span = {"total": "the whole measured run", "steady_state": "the steady-state spans",
            "windowed": "the fixed window"}[result.measurement_methodology]
    table.add_row("throughput", f"{result.output_tokens_per_second:.1f} output tok/s over {span} "
                                f"({result.output_tokens} output tokens in {result.total_inference_time_sec:.2f} s, "
                                f"methodology '{result.measurement_methodology}')")
    table.add_row("TTFT", _latency(result.ttft))
    table.add_row("ITL", _latency(result.itl))
    for row in serving_rows(result):
        table.add_row(*row)
    for row in _energy_rows(result):
        table.add_row(*row)
    if result.flops is not None:
        f = result.flops
        per_s = f" · achieved {f.achieved_flops_per_s:.3e} FLOP/s" if f.achieved_flops_per_s else ""
        table.add_row("FLOPs", f"{f.total:.3e} (prefill {f.prefill:.3e} · decode {f.decode:.3e}){per_s}")
    warmup = (f"{result.warmup.batches} batch(es), {result.warmup.stop_reason}" if result.warmup
              else f"{result.warmup_batches} batch(es)")
    table.add_row("timing", f"model load {result.model_load_sec:.1f} s · warmup {escape(warmup)}, excluded")
    image = result.environment.image
    where = f"container from image {image.removeprefix('sha256:')[:12]}" if image else "local process"
    alloc = result.environment.allocation
    if alloc is not None:
        where = f"Slurm job {alloc.job_id} on {alloc.node or '?'} · {where}"
    table.add_row("ran in", where)
    table.add_row("result", str(exp_dir / "result.json"))
    for w in result.warnings:
        table.add_row("[yellow]warning[/]", escape(w))
    console.print(table)



def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def study_eta(manifest, gap_s: float = 0.0) -> float | None:
    """Seconds left: the mean duration of the finished runs times the runs left, plus the gaps between them."""
    durations = [e.duration_s for e in manifest.entries if e.status in ("done", "failed") and e.duration_s]
    left = manifest.count("pending", "running")
    if not left:
        return 0.0
    if not durations:
        return None
    return sum(durations) / len(durations) * left + gap_s * (left - 1)


def _last_result(result: ExperimentResult) -> str:
    jpt = (f"{result.avg_energy_per_token_j:.4g} J/token" if result.avg_energy_per_token_j is not None
           else "J/token null")
    return f"{result.output_tokens_per_second:.1f} output tok/s · {jpt}"


class StudyDisplay(StudyObserver):
    """The study's progress: run i/N, cycle, point, ETA, last result and failures. On a terminal one rich Live
    area (a header and the current run's bars); elsewhere a plain line when a run starts and one when it ends."""

    def __init__(self, console: Console, n_cycles: int, gap_s: float = 0.0) -> None:
        self.console = console
        self.n_cycles = n_cycles
        self.gap_s = gap_s
        self._live: Live | None = None
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}
        self._header = ""
        self._status = ""

    def __enter__(self) -> StudyDisplay:
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("  [bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=self.console,
            )
            self._live = Live(self, console=self.console, refresh_per_second=4, transient=True)
            self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __rich__(self):
        parts = [Text.from_markup(self._header)] if self._header else []
        if self._status:
            parts.append(Text.from_markup(self._status))
        if self._progress is not None and self._tasks:
            parts.append(self._progress)
        return Group(*parts)

    def _counts(self, outcome) -> tuple[int, int, int]:
        m = outcome.manifest
        return m.count("done", "failed"), len(m.entries), m.count("failed")

    def started(self, outcome, notes: list[str]) -> None:
        for note in notes:
            self.console.print(f"[yellow]resume[/] {escape(note)}")
        finished, total, _ = self._counts(outcome)
        already = f" ({finished} finished before)" if finished else ""
        self.console.print(f"[bold]lem[/] study {escape(outcome.manifest.study)} · {total} runs{already} · "
                           f"{escape(str(outcome.study_dir))}")

    def run_started(self, entry, outcome, runner: str) -> None:
        finished, total, failures = self._counts(outcome)
        eta = study_eta(outcome.manifest, self.gap_s)
        line = (f"[{finished + 1}/{total}] {escape(entry.label)} · cycle {entry.cycle}/{self.n_cycles} · {runner} "
                f"runner · ETA {_fmt_duration(eta) if eta is not None else '—'} · failures {failures}")
        if self._progress is not None:
            for task in self._tasks.values():
                self._progress.remove_task(task)
            self._tasks.clear()
            self._header = f"[bold]{line}[/]"
        else:
            self.console.print(line)

    def event(self, event: ProgressEvent) -> None:
        if event.event == "error":
            self.console.print(f"  [red]runner error:[/] {escape(event.message)}")
        elif self._progress is not None and event.event in ("warmup", "progress") and event.done is not None \
                and event.total:
            name = "warmup" if event.event == "warmup" else "measuring"
            if name not in self._tasks:
                self._tasks[name] = self._progress.add_task(name, total=event.total)
            self._progress.update(self._tasks[name], completed=event.done, total=event.total)

    def run_finished(self, entry, outcome) -> None:
        result = outcome.results.get(entry.run)
        took = f"{entry.duration_s:.1f} s" if entry.duration_s is not None else ""
        if result is not None:
            line = f"  [green]done[/] {escape(entry.label)} c{entry.cycle} · {_last_result(result)} · {took}"
            self._status = f"  last: {escape(entry.label)} c{entry.cycle} · {_last_result(result)}"
        else:
            first = (entry.error or "").splitlines()[0] if entry.error else ""
            line = f"  [red]failed[/] ({entry.reason}) {escape(entry.label)} c{entry.cycle}: {escape(first)}"
        self.console.print(line)  # on a terminal too: it stays above the live area as the study's log

    def waiting(self, seconds: float) -> None:
        if self._progress is None:
            self.console.print(f"  pause {seconds:g} s (gap)")
        else:
            self._header += f" · pause {seconds:g} s"


def _cell(stats, fmt: str) -> str:
    if stats.mean is None:
        return "null"
    return f"{stats.mean:{fmt}}" + (f" ± {stats.ci95:{fmt}}" if stats.ci95 is not None else "")


def render_study(console: Console, outcome, warnings=(), resume_hint: str | None = None) -> None:
    """The study's table: one row per point (mean ± 95 % CI over its cycles) when it has several cycles, else one
    row per run; then failures, CV warnings, the controller's overhead, and how to resume if runs are left."""
    manifest, study_dir = outcome.manifest, outcome.study_dir
    aggs = outcome.aggregates()
    reasons = {a.energy_unavailable_reason for a in aggs}
    if manifest.n_cycles > 1:
        table = Table(title=f"Study · {study_dir.name} · {manifest.n_cycles} cycles (mean ± 95 % CI)",
                      title_justify="left")
        for col in ("experiment", "backend", "tok/s", "TTFT p50 ms", "ITL p50 ms", "J/token", "n ok/total"):
            table.add_column(col, justify="left" if col in ("experiment", "backend") else "right")
        for a in aggs:
            m = a.metrics
            n_total = a.n_ok + a.n_failed
            ok = f"{a.n_ok}/{n_total}" if not a.n_failed else f"[red]{a.n_ok}/{n_total}[/]"
            table.add_row(escape(a.label), escape(a.backend), _cell(m["output_tokens_per_second"], ".1f"),
                          _cell(m["ttft_p50_ms"], ".1f"), _cell(m["itl_p50_ms"], ".2f"),
                          _cell(m["energy_per_token_j"], ".4g"), ok)
    else:
        table = Table(title=f"Study · {study_dir.name}", title_justify="left")
        for col in ("experiment", "backend", "runner", "tok/s", "TTFT p50", "ITL p50", "J/token", "FLOPs", "status"):
            table.add_column(col, justify="right" if col in ("tok/s", "TTFT p50", "ITL p50", "FLOPs") else "left")
        backend = {p.index: p.backend for p in manifest.points}
        for e in manifest.entries:
            r = outcome.results.get(e.run)
            if e.status == "failed":
                table.add_row(escape(e.label), backend[e.point], e.runner or "", "", "", "", "", "",
                              f"[red]failed[/] ({e.reason})")
            elif r is not None:
                table.add_row(
                    escape(e.label), backend[e.point], e.runner or "", f"{r.output_tokens_per_second:.1f}",
                    f"{r.ttft.p50_ms:.1f} ms" if r.ttft else "—", f"{r.itl.p50_ms:.2f} ms" if r.itl else "—",
                    f"{r.avg_energy_per_token_j:.4g}" if r.avg_energy_per_token_j is not None else "null",
                    f"{r.total_flops:.3g}" if r.total_flops else "—", "[green]done[/]",
                )
    console.print(table)
    for e in manifest.entries:
        if e.status == "failed":
            first = (e.error or "").splitlines()[0] if e.error else ""
            console.print(f"  [red]failed[/] {escape(e.label)} cycle {e.cycle} ({e.reason}): {escape(first)}")
    for reason in sorted(x for x in reasons if x):
        console.print(f"  J/token null: {escape(reason)}")
    for warning in warnings:
        console.print(f"  [yellow]warning[/] {escape(warning)}")
    if manifest.controller_overhead_s_per_experiment is not None:
        console.print(f"  controller overhead: {manifest.controller_overhead_s_per_experiment:.3f} s per experiment "
                      "(study wall time less runner time and gaps, per run)")
    console.print(f"  summary: {study_dir / 'study_summary.json'} · {study_dir / 'study_summary.csv'} · "
                  f"manifest: {study_dir / 'manifest.json'}")
    left = manifest.count("pending", "running")
    if left:
        why = f" ({escape(manifest.stop_reason)})" if manifest.stop_reason else ""
        console.print(f"  [yellow]{left} run(s) not done{why}[/]"
                      + (f"; resume with: {escape(resume_hint)}" if resume_hint else ""))
    failed = manifest.count("failed")
    if failed and resume_hint:
        console.print(f"  {failed} run(s) failed; to run them again: {escape(resume_hint)} --retry-failed")
