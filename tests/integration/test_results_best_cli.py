"""`lem results best` through the real CLI on the known study of tests/unit/test_results_best.py."""

from __future__ import annotations

import pytest
from conftest import run_lem
from dial_study import write_dial_study


@pytest.fixture
def study(tmp_path):
    return write_dial_study(tmp_path)


def test_cli_prints_the_pick_and_every_candidate(study):
    out = run_lem("results", "best", str(study), "--ttft-p50-ms", "200", timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("best for TTFT p50 <= 200 ms: dial: gpu.power_limit_w=400, gpu.locked_sm_clock_mhz=1400 "
                               "(pytorch; 400 W, SM 1400 MHz): 0.4 ± ")
    assert "2 of 3 configuration(s) meet the targets" in lines[1]
    assert any("missed:" in ln and "TTFT p50 260.0 ms > 200" in ln for ln in lines)
    none = run_lem("results", "best", str(study), "--ttft-p50-ms", "10", timeout=120)
    assert none.returncode == 1 and none.stderr.startswith("error: no configuration meets the targets")
