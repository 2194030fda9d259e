"""Host-side GPU state: the run's operating point (power limit, locked clocks, persistence mode) set through NVML
before the runner starts and restored when it ends, with a restore journal for a lem that is killed. The controller
owns this; runners and containers never change GPU state."""

from llenergymeasure.gpustate.apply import operating_point, recover_stale, restore_from_journal, validate
from llenergymeasure.gpustate.device import GpuControl, GpuStateError, NvmlGpu, open_nvml
from llenergymeasure.gpustate.journal import Journal, host_journals, read_journal

__all__ = ["GpuControl", "GpuStateError", "Journal", "NvmlGpu", "host_journals", "open_nvml", "operating_point",
           "read_journal", "recover_stale", "restore_from_journal", "validate"]
