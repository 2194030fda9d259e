"""The sampled timeseries as Parquet beside result.json: one row per device per sampler tick, time in seconds from
the start of the measurement window (negative before it), written atomically."""

from __future__ import annotations

from pathlib import Path

from lem_runner.contract.atomic import atomic_write_bytes
from lem_runner.energy.sampler import SampleRow

FILE_NAME = "timeseries.parquet"
COLUMNS = ["t_s", "device", "energy_counter_mj", "power_w", "temperature_c", "sm_clock_mhz", "memory_used_mib",
           "utilization_pct", "clock_event_reasons", "memory_clock_mhz", "power_limit_w"]


def write_timeseries(rows: list[SampleRow], path: Path, origin: float) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {
        "t_s": [r.t - origin for r in rows],
        "device": [r.device for r in rows],
        "energy_counter_mj": [None if r.energy_mj is None else float(r.energy_mj) for r in rows],
        "power_w": [r.sample.power_w for r in rows],
        "temperature_c": [r.sample.temperature_c for r in rows],
        "sm_clock_mhz": [r.sample.sm_clock_mhz for r in rows],
        "memory_used_mib": [r.sample.memory_used_mib for r in rows],
        "utilization_pct": [r.sample.utilization_pct for r in rows],
        "clock_event_reasons": [r.sample.clock_event_reasons for r in rows],
        "memory_clock_mhz": [r.sample.memory_clock_mhz for r in rows],
        "power_limit_w": [r.sample.power_limit_w for r in rows],
    }
    schema = pa.schema([("t_s", pa.float64()), ("device", pa.string()), ("energy_counter_mj", pa.float64()),
                        ("power_w", pa.float64()), ("temperature_c", pa.float64()), ("sm_clock_mhz", pa.int64()),
                        ("memory_used_mib", pa.float64()), ("utilization_pct", pa.float64()),
                        ("clock_event_reasons", pa.int64()), ("memory_clock_mhz", pa.int64()),
                        ("power_limit_w", pa.float64())])
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns, schema=schema), sink)
    return atomic_write_bytes(path, sink.getvalue().to_pybytes())
