"""Progress that agrees with the result (issue 26 item 11) and says each thing once (item 10): a real rich Console
writing plain lines (not a terminal, as in CI or a pipe), fed the runner's real progress events with real time
passing."""

from __future__ import annotations

import io
import re
import time

from lem_runner.contract import ProgressEvent
from llenergymeasure.render.progress import RunDisplay, StudyDisplay
from rich.console import Console


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=120, highlight=False), out


def test_the_measuring_bar_is_timed_from_the_windows_start_not_its_first_update():
    console, out = _console()
    with RunDisplay(console, "t", pulse_s=3600) as display:
        display(ProgressEvent(event="started", message="x"))
        display(ProgressEvent(event="model_loaded", message="in 0.1 s"))
        display(ProgressEvent(event="warmup", done=1, total=1))  # the window opens right after the last warmup batch
        opened = time.monotonic()
        time.sleep(1.6)  # the first (and only) batch of 16 prompts runs
        display(ProgressEvent(event="progress", done=16, total=16))
        window = time.monotonic() - opened
    (line,) = [ln for ln in out.getvalue().splitlines() if ln.strip().startswith("measuring")]
    m = re.fullmatch(r"\s*measuring 16/16 · (\d+) s elapsed · eta 0 s\s*", line)
    assert m, line  # before: "measuring 16/16" with no time at all (the bar's clock started at this update)
    assert abs(int(m.group(1)) - window) <= 1, (line, window)


def test_off_a_terminal_a_silent_runner_still_gets_a_line_every_pulse():
    console, out = _console()
    with RunDisplay(console, "t", pulse_s=0.3) as display:
        display(ProgressEvent(event="started", message="x"))
        time.sleep(1.5)  # the model loads: no event for a while
        display(ProgressEvent(event="model_loaded", message="in 1.5 s"))
        display(ProgressEvent(event="progress", done=1, total=4))
        time.sleep(1.0)  # a long batch
    lines = out.getvalue().splitlines()
    loading = [ln for ln in lines if "still loading the model" in ln]
    assert len(loading) >= 2, lines
    measuring = [ln for ln in lines if ln.strip().startswith("measuring 1/4")]
    assert len(measuring) >= 2 and all("elapsed" in ln for ln in measuring), lines  # the bar as it stands, again


def test_runner_errors_and_interruptions_are_left_to_the_commands_last_line():
    console, out = _console()
    with RunDisplay(console, "t", pulse_s=3600) as display:
        display(ProgressEvent(event="started", message="x"))
        display(ProgressEvent(event="error", message="SIGINT: stopped during load", data={"status": "interrupted"}))
        display(ProgressEvent(event="error", message="during warmup: ServerError: warmup request failed"))
    text = out.getvalue()
    assert "SIGINT" not in text and "ServerError" not in text and "runner error" not in text, text
    study_console, study_out = _console()
    with StudyDisplay(study_console, n_cycles=1, pulse_s=3600) as study:
        study.event(ProgressEvent(event="error", message="SIGINT: stopped during measure",
                                  data={"status": "interrupted"}))
    assert "runner error" not in study_out.getvalue() and "SIGINT" not in study_out.getvalue()


def test_on_a_terminal_the_bar_is_timed_from_the_windows_start_too():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with RunDisplay(console, "t") as display:
        display(ProgressEvent(event="started", message="x"))
        display(ProgressEvent(event="warmup", done=1, total=1))
        time.sleep(1.3)
        display(ProgressEvent(event="progress", done=4, total=16))
        display._bars.progress.refresh()
    plain = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.getvalue())
    shown = re.findall(r"4/16 0:00:(\d\d) eta (\d+) s", plain)
    assert shown, plain
    elapsed, eta = map(int, shown[-1])
    assert elapsed >= 1 and eta >= 3  # 12 left at the window's rate of 4 per ~1.3 s
