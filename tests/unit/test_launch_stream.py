"""The stdout pump with real queues and threads: events in order, stray lines, timeouts, and docker log re-splitting."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from lem_runner.contract import ProgressEvent
from llenergymeasure.launchers import Timeouts
from llenergymeasure.launchers.docker import _lines
from llenergymeasure.launchers.stream import pump, start_reader


class Calls:
    """Records stop/kill presses by name."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def stop(self) -> None:
        self.log.append("stop")

    def kill(self) -> None:
        self.log.append("kill")


GENEROUS = Timeouts(wall_s=30, silence_s=30)


def _pump(lines, timeouts=GENEROUS):
    events: list[ProgressEvent] = []
    other: list[str] = []
    calls = Calls()
    timed_out = pump(start_reader(lines), events.append, other.append, timeouts, calls.stop, calls.kill)
    return timed_out, events, other, calls.log


def _event(kind: str, **fields) -> str:
    return ProgressEvent(event=kind, **fields).to_line() + "\n"


def test_events_arrive_in_order_and_stray_lines_go_elsewhere():
    lines = [
        _event("started", message="exp-1"),
        "Loading checkpoint shards: 100%\n",
        _event("progress", done=1, total=2),
        "\n",
        '{"not": "an event"}\n',
        _event("progress", done=2, total=2).encode(),
        b"a warning as bytes \xe2\x9a\xa0\n",
        _event("done", message="/x/result.json"),
    ]
    timed_out, events, other, calls = _pump(lines)
    assert timed_out is None
    assert [(e.event, e.done) for e in events] == [("started", None), ("progress", 1), ("progress", 2), ("done", None)]
    assert events[0].message == "exp-1"
    assert other == ["Loading checkpoint shards: 100%", '{"not": "an event"}', "a warning as bytes \u26a0"]
    assert calls == []


def test_end_of_stream_returns_none_without_stopping_anything():
    assert _pump(iter([])) == (None, [], [], [])


def test_a_stream_that_breaks_ends_like_a_closed_one():
    def broken() -> Iterator[str]:
        yield _event("started")
        raise OSError("pipe closed under us")

    timed_out, events, _, calls = _pump(broken())
    assert (timed_out, [e.event for e in events], calls) == (None, ["started"], [])


@pytest.fixture
def release():
    """Set after the test, so a reader thread blocked on it can finish."""
    event = threading.Event()
    yield event
    event.set()


def test_a_silent_runner_is_killed_after_the_silence_timeout(release):
    def hangs() -> Iterator[str]:
        yield _event("started")
        release.wait()  # blocks until the test is over

    timed_out, events, _, calls = _pump(hangs(), Timeouts(wall_s=None, silence_s=0.3))
    assert timed_out == "silence"
    assert calls == ["kill"]
    assert [e.event for e in events] == ["started"]


def test_a_chatty_runner_still_hits_the_wall_timeout(release):
    def chatters() -> Iterator[str]:
        while not release.is_set():
            yield _event("progress", done=1, total=9)
            release.wait(0.05)

    timed_out, events, _, calls = _pump(chatters(), Timeouts(wall_s=0.5, silence_s=5))
    assert timed_out == "wall"
    assert calls == ["kill"]
    assert events and all(e.event == "progress" for e in events)


def test_no_timeouts_means_waiting_for_the_end(release):
    def slow() -> Iterator[str]:
        release.wait(0.5)
        yield _event("done")

    timed_out, events, _, calls = _pump(slow(), Timeouts(wall_s=None, silence_s=None))
    assert (timed_out, [e.event for e in events], calls) == (None, ["done"], [])


# --- docker log chunks ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "lines"),
    [
        ([b'{"event": "sta', b'rted"}\n'], ['{"event": "started"}']),
        ([b"one\ntwo\nthree\n"], ["one", "two", "three"]),
        ([b"a\nb", b"c\nd"], ["a", "bc", "d"]),
        ([b"", b"x", b"", b"y\n", b""], ["xy"]),
        ([b"trailing partial"], ["trailing partial"]),
        ([b"empty\n\nline\n"], ["empty", "", "line"]),
        (["caf\u00e9 \u26a0\n".encode()[:4], "caf\u00e9 \u26a0\n".encode()[4:]], ["caf\u00e9 \u26a0"]),
        ([b"bad \xff byte\n"], ["bad \ufffd byte"]),
        ([], []),
    ],
)
def test_docker_log_chunks_are_re_split_into_lines(chunks, lines):
    assert list(_lines(iter(chunks))) == lines


def test_re_split_docker_logs_pump_into_events():
    stream = [_event("started").encode()[:7], _event("started").encode()[7:] + b"noise\n" + _event("done").encode()]
    timed_out, events, other, _ = _pump(_lines(iter(stream)))
    assert (timed_out, [e.event for e in events], other) == (None, ["started", "done"], ["noise"])
