"""A lem stand-in for the GPU-state tests: holds a ``gpu:`` operating point on a FakeGpu (state in STATE_DIR,
journal in JOURNAL_DIR) and prints ``ready`` once it is applied, then sleeps until a signal ends it (or a SIGKILL
does not). ``python -m gpustate_holder STATE_DIR JOURNAL_DIR [WATTS [SM_MHZ]]``; exit 130 after Ctrl-C/SIGTERM."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from fakes import fake_gpu_opener
from lem_runner.contract import GpuConfig
from llenergymeasure.gpustate import operating_point


def main() -> int:
    state_dir, journal_dir = Path(sys.argv[1]), Path(sys.argv[2])
    watts = float(sys.argv[3]) if len(sys.argv) > 3 else 300.0
    sm = int(sys.argv[4]) if len(sys.argv) > 4 else 1200
    gpu = GpuConfig(power_limit_w=watts, locked_sm_clock_mhz=sm)
    try:
        with operating_point(gpu, ["0"], fake_gpu_opener(state_dir), directory=journal_dir):
            print("ready", flush=True)
            while True:
                time.sleep(0.05)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
