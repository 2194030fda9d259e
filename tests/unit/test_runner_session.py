"""The runner's session loop (lem_runner.session.serve_session) over real files: requests taken in number order as
they appear, ``end`` closes, a failed run ends the session with its code, an idle session ends itself."""

from __future__ import annotations

import threading
import time

from lem_runner.contract import SESSION_END_FILE, session_request_file
from lem_runner.session import serve_session


def _writer(folder, names, delay=0.05):
    def write():
        for name in names:
            time.sleep(delay)
            (folder / name).write_text("{}")
    t = threading.Thread(target=write)
    t.start()
    return t


def test_requests_in_order_then_end(tmp_path):
    seen = []
    t = _writer(tmp_path, [session_request_file(1), session_request_file(2), SESSION_END_FILE])
    code = serve_session(tmp_path, lambda path, n, held: seen.append((path.name, n)) or 0, lambda e: None, 10)
    t.join()
    assert code == 0 and seen == [("request-0001.json", 1), ("request-0002.json", 2)]


def test_a_failed_run_ends_the_session_with_its_code(tmp_path):
    seen = []
    t = _writer(tmp_path, [session_request_file(1), session_request_file(2), session_request_file(3)])
    code = serve_session(tmp_path, lambda path, n, held: seen.append(n) or (1 if n == 2 else 0), lambda e: None, 10)
    t.join()
    assert code == 1 and seen == [1, 2]


def test_a_session_nobody_feeds_ends_itself(tmp_path):
    events = []
    t0 = time.monotonic()
    code = serve_session(tmp_path, lambda path, n, held: 0, events.append, idle_exit_s=0.3)
    assert code == 1 and 0.3 <= time.monotonic() - t0 < 5
    assert events[-1].event == "error" and "no request 1" in events[-1].message
