"""EngineWatch with real child processes: one that dies interrupts a main thread blocked in a wait, within seconds,
with the error it printed on the inherited stderr; a pause (an engine shut down on purpose) ignores exits."""

from __future__ import annotations

import contextlib
import multiprocessing
import subprocess
import sys
import time

import pytest
from lem_runner.backends.engine_watch import EngineDied, EngineWatch, root_cause
from lem_runner.backends.vllm.spec import MARKERS as VLLM_MARKERS  # the vLLM backend's own (its spec)

DIES = ("import sys, time; time.sleep(1.5); "
        "print('(EngineCore_DP0 pid=7) Traceback (most recent call last):', file=sys.stderr); "
        "print('(EngineCore_DP0 pid=7) torch._inductor.exc.InductorError: InvalidCxxCompiler: No working C++ compiler "
        "found in torch._inductor.config.cpp.cxx: (None, \"g++\")', file=sys.stderr); "
        "print('RuntimeError: Engine core initialization failed. See root cause above.', file=sys.stderr); "
        "sys.stderr.flush(); sys.exit(1)")


def _engine_child(code: str):
    """A spawned multiprocessing child, as vLLM starts its engine core and workers."""
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=exec, args=(code,), daemon=True)
    proc.start()
    return proc


def test_a_child_that_dies_interrupts_a_blocked_main_thread_with_its_error():
    watch = EngineWatch("test engine", period_s=0.2, markers=VLLM_MARKERS).start()
    child = _engine_child(DIES)
    try:
        t0 = time.monotonic()
        with pytest.raises(EngineDied) as info:
            time.sleep(60)  # a front end waiting on a dead engine
        assert time.monotonic() - t0 < 15
    finally:
        watch.stop()
        child.join()
    message = str(info.value)
    # the process's exit, or (whichever the watch sees first) the failure it logged before exiting
    assert message.startswith(("test engine process python", "test engine failed:")), message
    assert message.endswith(": torch._inductor.exc.InductorError: InvalidCxxCompiler: No working C++ compiler found "
                            'in torch._inductor.config.cpp.cxx: (None, "g++")'), message


def test_an_engine_that_logs_its_failure_but_lingers_is_dead_too():
    """Seen on vLLM 0.32 CPU: the worker reports InvalidCxxCompiler and stays alive; the engine core logs 'Worker
    failed with error' and hangs; nothing exits."""
    lingers = ("import sys, time; time.sleep(1.0); "
               "print('(Worker pid=9) ERROR [x.py:1] torch._inductor.exc.InductorError: InvalidCxxCompiler: none', "
               "file=sys.stderr); print(\"(EngineCore pid=8) ERROR RuntimeError: Worker failed with error "
               "'InvalidCxxCompiler: none'\", file=sys.stderr); sys.stderr.flush(); time.sleep(120)")
    watch = EngineWatch("test engine", period_s=0.2, markers=VLLM_MARKERS).start()
    child = _engine_child(lingers)
    try:
        with pytest.raises(EngineDied, match="^test engine failed: torch._inductor.exc.InductorError: InvalidCxx"):
            time.sleep(60)
        watch.kill_engine()
        child.join(timeout=10)
        assert not child.is_alive()  # the lingering process is gone, so this one can exit
    finally:
        watch.stop()


def test_a_paused_watch_lets_the_engine_shut_down():
    watch = EngineWatch("test engine", period_s=0.2, markers=VLLM_MARKERS).start()
    child = _engine_child("import time; time.sleep(1.5)")
    try:
        time.sleep(1.0)  # seen alive on a few polls
        watch.pause()
        child.join()
        time.sleep(1.0)  # nothing is raised: the exit was on purpose
        assert watch.died is None
    finally:
        watch.stop()


def test_short_lived_helpers_are_not_mistaken_for_the_engine():
    watch = EngineWatch("test engine", period_s=0.2, markers=VLLM_MARKERS).start()
    try:
        # plain subprocesses, however long they live (vLLM inspects model classes in one; lscpu; a compiler)
        subprocess.run([sys.executable, "-c", "import time; time.sleep(1.5)"], check=True)
        subprocess.run(["sleep", "1.5"], check=True)
        time.sleep(1.0)
        assert watch.died is None
    finally:
        watch.stop()


@pytest.mark.parametrize("lines, cause", [
    (["INFO loading", "(Worker pid=3) ERROR x", "(Worker pid=3) ValueError: bad block size",
      "RuntimeError: Engine core initialization failed. See root cause above."], "ValueError: bad block size"),
    (["RuntimeError: Engine core initialization failed. See root cause above."],
     "RuntimeError: Engine core initialization failed. See root cause above."),
    (["INFO all fine"], None),
])
def test_the_root_cause_is_the_first_exception_that_is_not_a_wrapper(lines, cause):
    assert root_cause(lines, VLLM_MARKERS.wrappers) == cause


RESOURCE_TRACKER_WARNING = ("/usr/lib/python3.11/multiprocessing/resource_tracker.py:123: UserWarning: "
                            "resource_tracker: process died unexpectedly, relaunching.  Some resources might leak.")


def test_pythons_resource_tracker_warning_does_not_fail_a_healthy_engine():
    """Python's multiprocessing prints this when it relaunches its resource tracker: harmless, and not the engine's
    own message, though it too says 'died unexpectedly'."""
    warns = (f"import sys, time; time.sleep(0.5); print({RESOURCE_TRACKER_WARNING!r}, file=sys.stderr); "
             "sys.stderr.flush(); time.sleep(3.0)")
    watch = EngineWatch("test engine", period_s=0.2, markers=VLLM_MARKERS).start()
    child = _engine_child(warns)
    try:
        time.sleep(2.5)  # the warning is on stderr, the child healthy
        assert any("resource_tracker" in ln for ln in watch.lines), list(watch.lines)
        assert watch.died is None and watch.fatal_line is None, watch.died
        watch.pause()
        child.join()
    finally:
        watch.stop()


def test_vllms_own_engine_core_death_message_still_marks_the_engine_dead():
    lingers = ("import sys, time; time.sleep(1.0); print('ERROR 12-01 23:08:02 [core_client.py:564] Engine core proc "
               "EngineCore_DP0 died unexpectedly, shutting down client.', file=sys.stderr); sys.stderr.flush(); "
               "time.sleep(120)")
    watch = EngineWatch("test engine", period_s=0.2, markers=VLLM_MARKERS).start()
    child = _engine_child(lingers)
    try:
        with pytest.raises(EngineDied, match="^test engine failed"):
            time.sleep(60)
        watch.kill_engine()
        child.join(timeout=10)
    finally:
        watch.stop()


def test_the_watch_reads_only_its_own_process_tree_and_finds_what_a_full_scan_finds():
    # a child that starts a grandchild, and a zombie child (exited, not reaped): the subtree read (children files)
    # must give the same live children and grandchildren as the full /proc scan, without the zombie
    import os

    from lem_runner.backends.engine_watch import _children

    me = os.getpid()
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                              "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
                              "print(g.pid, flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        grandchild = int(child.stdout.readline())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the zombie: exited, not yet waited for
            with open(f"/proc/{zombie.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.05)
        scan = _children()
        tree = _children(me)
        assert set(tree) <= {me} | set(scan.get(me, set()))  # only this process's subtree is in it
        assert child.pid in tree[me] and zombie.pid not in tree[me]
        assert grandchild in tree[child.pid]
        assert tree[me] == scan[me] and tree[child.pid] == scan[child.pid]
    finally:
        child.kill()
        child.wait()
        zombie.wait()
        with contextlib.suppress(OSError):
            os.kill(grandchild, 9)
