"""Live progress while runners work: one experiment's warmup and measuring bars, and a study's run i/N, cycle,
ETA, last result and failures. On a terminal, rich bars (a study: one live area); elsewhere (CI, pipes), plain
lines. Both read the runner's progress events the same way (``_Bars``, ``_Phases``).

A bar's clock starts where its phase started, not at its first update: the measuring window opens right after the
runner's last event before it (the last warmup batch, the baseline or the load), so "N s elapsed" and the ETA cover
the real window, and the final "N tokens in T s" agrees with them. Off a terminal a line is printed every
``pulse_s`` (30 s) that nothing else was, so a log never falls silent for minutes while a batch or a load runs.
Errors are not printed here: the command's last line says them, once."""

from __future__ import annotations

import threading
import time

from lem_runner.contract import ExperimentResult, ProgressEvent
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from llenergymeasure.render.text import clock, duration
from llenergymeasure.study.execute import StudyObserver

#: seconds between the plain lines printed off a terminal while no event comes
PULSE_S = 30.0
#: what a runner is doing after each kind of event (for the plain line printed while it is silent)
DOING = {"started": "loading the model", "model_loaded": "measuring the idle baseline / warming up",
         "baseline": "warming up", "warmup": "warming up", "progress": "measuring", "measured": "writing the result"}


class _Phases:
    """When each bar's phase started (the time of the event before its first update) and where it stands, read
    from the runner's events."""

    def __init__(self) -> None:
        self.last_event = time.monotonic()
        self.kind: str | None = None
        self.started: dict[str, float] = {}
        self.bar: tuple[str, int, int] | None = None

    def saw(self, event: ProgressEvent) -> tuple[str, int, int] | None:
        now = time.monotonic()
        bar = bar_of(event)
        if bar is not None:
            self.started.setdefault(bar[0], self.last_event)
            self.bar = bar
        elif event.event not in ("progress", "warmup"):
            self.bar = None
        self.last_event, self.kind = now, event.event
        return bar

    def line(self, name: str, done: int, total: int) -> str:
        """'measuring 4/16 · 12 s elapsed · eta 36 s', timed from the phase's start."""
        elapsed = time.monotonic() - self.started.get(name, self.last_event)
        if done <= 0 or elapsed <= 0:
            return f"{name} {done}/{total}"
        return f"{name} {done}/{total} · {duration(elapsed)} elapsed · eta {duration((total - done) * elapsed / done)}"

    def quiet_line(self) -> str:
        """The line for a silent stretch: the bar as it stands, or what the runner is doing and for how long."""
        if self.bar is not None:
            return self.line(*self.bar)
        doing = DOING.get(self.kind or "", "starting the runner")
        return f"still {doing} · {duration(time.monotonic() - self.last_event)} since its last word"


class _Pulse:
    """Off a terminal: calls ``say`` every ``every_s`` that nothing was printed, until stopped."""

    def __init__(self, say, every_s: float) -> None:
        self.say = say
        self.every_s = every_s
        self.printed = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lem-progress-pulse", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _loop(self) -> None:
        while not self._stop.wait(min(1.0, self.every_s / 4)):
            if time.monotonic() - self.printed >= self.every_s:
                self.printed = time.monotonic()
                try:
                    self.say()
                except (BrokenPipeError, OSError, ValueError):  # the reader has gone: the main thread handles it
                    return


class _WindowEta(ProgressColumn):
    """Time left from the rate over the bar's whole phase (done / elapsed since it started), as the plain lines
    compute it: rich's own column needs two updates and a recent rate, which a few long batches never give."""

    def render(self, task) -> Text:
        elapsed, done = task.elapsed, task.completed
        if not elapsed or not done or task.total is None:
            return Text("eta -", style="progress.remaining")
        return Text(f"eta {duration((task.total - done) * elapsed / done)}", style="progress.remaining")


class _Bars:
    """The warmup and measuring bars a runner's progress events drive, in one rich Progress."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def update(self, name: str, done: int, total: int, started: float | None = None) -> None:
        """Advance bar ``name``; a new bar's clock starts at ``started`` (monotonic: its phase's start) when given."""
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total)
            if started is not None:
                for task in self.progress.tasks:
                    if task.id == self.tasks[name]:
                        task.start_time = started
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

    def __init__(self, console: Console, title: str, pulse_s: float = PULSE_S) -> None:
        self.console = console
        self.title = title
        self._bars: _Bars | None = None
        self._phases = _Phases()
        self._announced = False
        self._pulse: _Pulse | None = None
        self._pulse_s = pulse_s

    def __enter__(self) -> RunDisplay:
        if self.console.is_terminal:
            self._bars = _Bars(Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                _WindowEta(), console=self.console, transient=True,
            ))
            self._bars.progress.start()
        else:
            self._pulse = _Pulse(lambda: self._print(f"  {self._phases.quiet_line()}"), self._pulse_s)
            self._pulse.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._pulse is not None:
            self._pulse.stop()
        if self._bars is not None:
            self._bars.progress.stop()

    def _print(self, line: str) -> None:
        if self._pulse is not None:
            self._pulse.printed = time.monotonic()
        self.console.print(line)

    def __call__(self, event: ProgressEvent) -> None:
        if not self._announced:  # only once a runner speaks: a config refused before it starts prints one line
            self._announced = True
            self._print(f"[bold]lem[/] {escape(self.title)}")
        bar = self._phases.saw(event)
        if bar is not None:
            if self._bars is None:
                self._print(f"  {self._phases.line(*bar)}")
            else:
                self._bars.update(*bar, started=self._phases.started.get(bar[0]))
        elif event.event in ("started", "model_loaded", "baseline", "measured"):
            self._print(f"  {event.event.replace('_', ' ')}: {escape(event.message)}")
        # an 'error' event is not printed: the command's last line says it (interrupted or failed), once


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

    def __init__(self, console: Console, n_cycles: int, gap_s: float = 0.0, pulse_s: float = PULSE_S) -> None:
        self.console = console
        self.n_cycles = n_cycles
        self.gap_s = gap_s
        self._live: Live | None = None
        self._bars: _Bars | None = None
        self._header = ""
        self._status = ""
        self._phases = _Phases()
        self._run = ""
        self._pulse: _Pulse | None = None
        self._pulse_s = pulse_s

    def __enter__(self) -> StudyDisplay:
        if self.console.is_terminal:
            self._bars = _Bars(Progress(
                TextColumn("  [bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=self.console,
            ))
            self._live = Live(self, console=self.console, refresh_per_second=4, transient=True)
            self._live.start()
        else:
            self._pulse = _Pulse(lambda: self._print(f"  {self._run}{self._phases.quiet_line()}"), self._pulse_s)
            self._pulse.start()
        return self

    def _print(self, line: str) -> None:
        if self._pulse is not None:
            self._pulse.printed = time.monotonic()
        self.console.print(line)

    def __exit__(self, *exc) -> None:
        if self._pulse is not None:
            self._pulse.stop()
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
        self._phases = _Phases()
        self._run = f"[{finished + 1}/{total}] {escape(entry.label)} · "
        if self._bars is not None:
            self._bars.clear()
            self._header = f"[bold]{line}[/]"
        else:
            self._print(line)

    def event(self, event: ProgressEvent) -> None:
        # an 'error' event is not printed: run_finished says why the run failed, the study's end an interruption
        bar = self._phases.saw(event)
        if self._bars is not None and bar is not None:
            self._bars.update(*bar, started=self._phases.started.get(bar[0]))

    def run_finished(self, entry, outcome) -> None:
        result = outcome.results.get(entry.run)
        took = f"{entry.duration_s:.1f} s" if entry.duration_s is not None else ""
        if result is not None:
            line = f"  [green]done[/] {escape(entry.label)} c{entry.cycle} · {_last_result(result)} · {took}"
            self._status = f"  last: {escape(entry.label)} c{entry.cycle} · {_last_result(result)}"
        else:
            first = (entry.error or "").splitlines()[0] if entry.error else ""
            line = f"  [red]failed[/] ({entry.reason}) {escape(entry.label)} c{entry.cycle}: {escape(first)}"
        self._print(line)  # on a terminal too: it stays above the live area as the study's log

    def waiting(self, seconds: float) -> None:
        if self._bars is None:
            self._print(f"  pause {seconds:g} s (gap)")
        else:
            self._header += f" · pause {seconds:g} s"
