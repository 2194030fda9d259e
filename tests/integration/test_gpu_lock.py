"""The per-GPU advisory lock with real processes contending for the same lock file (no GPU needed: the lock is a file).

A holder process takes the lock through the real module and keeps it; a second process (or the real `lem` CLI) then
waits, times out with the holder named, or skips the lock with --no-lock. The kernel frees the lock when its holder
is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import make_config, run_lem, write_yaml
from llenergymeasure.host.gpu_lock import DeviceBusy, GpuLock, LockPolicy, gpu_locks, lock_ids
from llenergymeasure.host.inventory import gpu_count

HOLDER = textwrap.dedent("""\
    import sys, time
    from llenergymeasure.host.gpu_lock import GpuLock
    lock = GpuLock(sys.argv[1])
    lock.acquire()
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    lock.release()
    print("released", flush=True)
""")


def _holder(cache: Path, gpu: str, hold_s: float) -> subprocess.Popen:
    """A separate Python process holding GPU ``gpu``'s lock for ``hold_s`` seconds (it prints 'held' once it has)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, gpu, str(hold_s)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "LEM_CACHE_DIR": str(cache)})
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LEM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LEM_LOCK_DIR", raising=False)
    return tmp_path / "cache"


def test_a_shared_lock_folder_can_be_named(tmp_path, monkeypatch):
    monkeypatch.setenv("LEM_LOCK_DIR", str(tmp_path / "shared"))
    with GpuLock("0") as lock:
        assert lock.path == tmp_path / "shared" / "gpu-0.lock" and lock.path.is_file()


def test_which_runs_lock_which_gpus(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert lock_ids(make_config(device="cpu")) == []
    assert lock_ids(make_config(device="auto"), host_gpus=0) == []  # a CPU run locks nothing
    assert lock_ids(make_config(device="auto"), host_gpus=2) == ["0"]
    assert lock_ids(make_config(device="cuda", devices=[3])) == ["3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa,GPU-bbbb")
    assert lock_ids(make_config(device="cuda", devices=[1])) == ["GPU-bbbb"]


def test_a_second_process_waits_for_the_holder_and_is_told_who_holds_it(cache):
    holder = _holder(cache, "0", hold_s=1.5)
    told: list[str] = []
    start = time.monotonic()
    with gpu_locks(make_config(device="cuda"), LockPolicy(notify=told.append)) as held:
        waited = time.monotonic() - start
        assert [lock.gpu_id for lock in held] == ["0"]
        assert f"pid {os.getpid()}" in (cache / "locks" / "gpu-0.lock").read_text()  # now we are the holder
    assert holder.wait(timeout=10) == 0
    assert 0.5 < waited < 10
    (line,) = told
    assert f"GPU 0 is in use by another lem (pid {holder.pid} since" in line and "waiting" in line
    assert (cache / "locks" / "gpu-0.lock").read_text() == ""  # released: no stale holder named


def test_a_lock_timeout_gives_up_naming_the_holder_and_no_lock_skips_it(cache):
    holder = _holder(cache, "0", hold_s=30)
    try:
        start = time.monotonic()
        with pytest.raises(DeviceBusy, match=rf"GPU 0 is in use by another lem \(pid {holder.pid} since .*--no-lock"):
            with gpu_locks(make_config(device="cuda"), LockPolicy(timeout_s=0.5)):
                pass
        assert 0.4 < time.monotonic() - start < 5
        with gpu_locks(make_config(device="cuda"), LockPolicy(enabled=False)) as held:
            assert held == []
        with gpu_locks(make_config(device="cuda", devices=[1]), LockPolicy(timeout_s=0)) as held:
            assert [lock.gpu_id for lock in held] == ["1"]  # another GPU is free
    finally:
        holder.kill()
        holder.wait()


def test_the_kernel_frees_the_lock_of_a_sigkilled_holder(cache):
    holder = _holder(cache, "0", hold_s=60)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    lock = GpuLock("0")
    lock.acquire(timeout_s=2)  # no stale lock: taken at once
    lock.release()


def test_two_lem_processes_contend_for_one_gpu(tmp_path, cache):
    """The real CLI: with the GPU's lock held by another process, `lem run` on that GPU waits and gives up after
    --lock-timeout (exit 3, the holder named, nothing written); --no-lock goes ahead (and is then refused, exit 2,
    where NVML sees no GPU; elsewhere fails only because the model folder has no weights)."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    cfg = write_yaml(tmp_path / "gpu.yaml", f"model: {model}\ndevice: cuda\nn_prompts: 1\nmax_output_tokens: 2\n")
    out = tmp_path / "r"
    holder = _holder(cache, "0", hold_s=60)
    try:
        env = {"LEM_CACHE_DIR": str(cache)}
        busy = run_lem("run", str(cfg), "-o", str(out), "--lock-timeout", "1", env=env, timeout=120)
        assert busy.returncode == 3, busy.stdout + busy.stderr
        lines = busy.stderr.strip().splitlines()
        assert lines[0].startswith("waiting: GPU 0 is in use by another lem") and f"pid {holder.pid}" in lines[0]
        assert lines[-1].startswith("error: GPU 0 is in use") and "--no-lock" in lines[-1]
        assert "Traceback" not in busy.stdout + busy.stderr
        assert not out.exists()  # nothing started, nothing written

        skipped = run_lem("run", str(cfg), "-o", str(out), "--no-lock", env=env, timeout=300)
        assert "in use by another lem" not in skipped.stdout + skipped.stderr
        if gpu_count() == 0:  # past the lock, refused before anything is written: no GPU on this host
            assert skipped.returncode == 2 and "needs an NVIDIA GPU" in skipped.stderr and not out.exists()
        else:
            assert skipped.returncode == 1 and len(list(out.iterdir())) == 1  # it ran (and failed: no CUDA here)
    finally:
        holder.kill()
        holder.wait()
