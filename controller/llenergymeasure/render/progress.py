"""Live progress while runners work: one experiment's warmup and measuring bars, and a study's run i/N, cycle,
ETA, last result and failures. On a terminal, rich bars (a study: one live area); elsewhere (CI, pipes), plain
lines. Both read the runner's progress events the same way (``_Bars``)."""

from __future__ import annotations

import time

from lem_runner.contract import ExperimentResult, ProgressEvent
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
from rich.text import Text

from llenergymeasure.render.text import clock, duration
from llenergymeasure.study.execute import StudyObserver


class _Bars:
    """The warmup and measuring bars a runner's progress events drive, in one rich Progress."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def update(self, name: str, done: int, total: int) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total)
        self.progress.update(self.tasks[name], completed=done, total=total)

    def clear(self) -> None:
        for task in self.tasks.values():
            self.progress.remove_task(task)
        self.tasks.clear()


def bar_of(event: ProgressEvent) -> tuple[str, int, int] | None:
    """(bar name, done, total) when the event advances a bar (warmup or measuring), else None."""
    if event.event in ("warmup", "progress") and event.done is not None and event.total:
        return ("warmup" if event.event == "warmup" else "measuring", event.done, event.total)
    return None


class RunDisplay:
    """A progress sink (callable on each event) usable as a context manager."""

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.title = title
        self._bars: _Bars | None = None
        self._started: dict[str, tuple[float, int]] = {}
        self._announced = False

    def __enter__(self) -> RunDisplay:
        if self.console.is_terminal:
            self._bars = _Bars(Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("eta"), TimeRemainingColumn(), console=self.console, transient=True,
            ))
            self._bars.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bars is not None:
            self._bars.progress.stop()

    def _bar(self, name: str, done: int, total: int) -> None:
        if self._bars is None:
            self.console.print(f"  {name} {done}/{total}{self._eta(name, done, total)}")
        else:
            self._bars.update(name, done, total)

    def _eta(self, name: str, done: int, total: int) -> str:
        """' · 12 s elapsed · eta 3 min' from the rate since this bar's first update (plain lines, off a terminal)."""
        now = time.monotonic()
        first = self._started.setdefault(name, (now, done))
        elapsed, counted = now - first[0], done - first[1]
        if counted <= 0 or elapsed <= 0:
            return ""
        left = (total - done) * elapsed / counted
        return f" · {duration(elapsed)} elapsed · eta {duration(left)}"

    def __call__(self, event: ProgressEvent) -> None:
        if not self._announced:  # only once a runner speaks: a config refused before it starts prints one line
            self._announced = True
            self.console.print(f"[bold]lem[/] {escape(self.title)}")
        if (bar := bar_of(event)) is not None:
            self._bar(*bar)
        elif event.event == "error" and event.data.get("status") == "interrupted":
            self.console.print(f"  [yellow]interrupted:[/] {escape(event.message)}")
        elif event.event == "error":
            self.console.print(f"  [red]runner error:[/] {escape(event.message)}")
        elif event.event in ("started", "model_loaded", "baseline", "measured"):
            self.console.print(f"  {event.event.replace('_', ' ')}: {escape(event.message)}")


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
    jpt = (f"{result.energy_per_token_j:.4g} J/token" if result.energy_per_token_j is not None
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
        self._bars: _Bars | None = None
        self._header = ""
        self._status = ""

    def __enter__(self) -> StudyDisplay:
        if self.console.is_terminal:
            self._bars = _Bars(Progress(
                TextColumn("  [bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=self.console,
            ))
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
        if self._bars is not None and self._bars.tasks:
            parts.append(self._bars.progress)
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
                f"runner · ETA {clock(eta) if eta is not None else '—'} · failures {failures}")
        if self._bars is not None:
            self._bars.clear()
            self._header = f"[bold]{line}[/]"
        else:
            self.console.print(line)

    def event(self, event: ProgressEvent) -> None:
        if event.event == "error":
            self.console.print(f"  [red]runner error:[/] {escape(event.message)}")
        elif self._bars is not None and (bar := bar_of(event)) is not None:
            self._bars.update(*bar)

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
        if self._bars is None:
            self.console.print(f"  pause {seconds:g} s (gap)")
        else:
            self._header += f" · pause {seconds:g} s"
