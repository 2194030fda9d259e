"""On a machine with an NVIDIA GPU (and root): the real NvmlGpu sets a power limit and a locked SM clock through the
same gpustate code lem runs, reads them back, sees the lock in force under load, and restores both. Where NVML
refuses (not root), the test fails with exactly what NVML answered."""

from __future__ import annotations

import threading
import time

import pytest
from lem_runner.contract import GpuConfig
from llenergymeasure.errors import SetupError
from llenergymeasure.gpustate import NvmlGpu, operating_point
from llenergymeasure.gpustate.journal import host_journals

pytestmark = pytest.mark.gpu


def _load_for(seconds: float) -> None:
    torch = pytest.importorskip("torch")
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        a = (a @ a) / 8192
        torch.cuda.synchronize()


def test_power_limit_and_sm_clock_are_set_read_back_and_restored(tmp_path):
    dev = NvmlGpu("0")
    lo, hi = dev.power_limit_range_w()
    before_w = dev.power_limit_w()
    target_w = max(lo, round(min(before_w, hi) * 0.9))  # mild: a mid SM clock under load stays under it
    clocks = sorted(dev.supported_sm_clocks_mhz(max(dev.supported_memory_clocks_mhz())))
    target_mhz = clocks[len(clocks) // 2]
    gpu = GpuConfig(power_limit_w=target_w, locked_sm_clock_mhz=target_mhz)
    seen: list[int] = []
    try:
        with operating_point(gpu, ["0"], directory=tmp_path) as (setting,):
            assert len(host_journals(tmp_path)) == 1
            assert setting.applied_power_limit_w == pytest.approx(target_w, abs=1)
            assert dev.power_limit_w() == pytest.approx(target_w, abs=1)
            t = threading.Thread(target=_load_for, args=(3.0,))
            t.start()
            time.sleep(1.5)
            seen.append(dev.sm_clock_mhz())
            t.join()
    except SetupError as exc:
        pytest.fail(f"NVML refused: {exc}")
    print(f"power limit {before_w} -> {target_w} W (range {lo}-{hi}); SM lock {target_mhz} MHz, seen {seen} under load")
    assert seen and abs(seen[0] - target_mhz) <= 30  # the lock is in force under load
    assert dev.power_limit_w() == pytest.approx(before_w, abs=1)  # restored
    assert host_journals(tmp_path) == []


def test_a_value_outside_the_device_range_is_refused_before_anything_changes(tmp_path):
    dev = NvmlGpu("0")
    lo, hi = dev.power_limit_range_w()
    before = dev.power_limit_w()
    with pytest.raises(Exception, match=rf"gpu.power_limit_w: {hi + 100:g} W is outside what GPU 0 allows"):
        with operating_point(GpuConfig(power_limit_w=hi + 100), ["0"], directory=tmp_path):
            pass
    assert dev.power_limit_w() == before and host_journals(tmp_path) == []


def test_the_real_gpu_keeps_the_gpu_control_contract():
    """The contract FakeGpu and the simulated GPU are held to (tests/device_contract.py), on the real device (root)."""
    from device_contract import assert_gpu_control_contract

    assert_gpu_control_contract(NvmlGpu("0"))
