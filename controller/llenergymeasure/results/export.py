"""``lem results export``: the results table as CSV, Parquet or JSON lines, and the power timeseries (where runs
kept one) as a second file of the same format beside it. Written atomically: a reader never sees half a file."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lem_runner.contract.atomic import atomic_write_bytes
from lem_runner.contract.config import CarbonConfig

from llenergymeasure.errors import ConfigError
from llenergymeasure.results.carbon import with_carbon
from llenergymeasure.results.discover import find_experiments
from llenergymeasure.results.frame import results_frame, timeseries_frame

if TYPE_CHECKING:
    import pandas as pd

Format = Literal["csv", "parquet", "jsonl"]
FORMATS: tuple[str, ...] = ("csv", "parquet", "jsonl")


def frame_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "csv":
        return frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ").encode("utf-8")
    if fmt == "jsonl":
        records = json.loads(frame.to_json(orient="records", date_format="iso", date_unit="us"))
        return "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def timeseries_target(out: Path) -> Path:
    """``runs.csv`` -> ``runs_timeseries.csv``."""
    return out.with_name(f"{out.stem}_timeseries{out.suffix}")


def export_results(directory: Path, fmt: str, out: Path | None = None,
                   carbon: CarbonConfig | None = None) -> list[Path]:
    """Write the table (and the timeseries when any run kept one); returns the files written. ``carbon``
    (--grid-intensity/--pue) replaces the carbon settings the runs recorded."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: '{fmt}' is not one of {', '.join(FORMATS)}")
    experiments = with_carbon(find_experiments(directory), carbon)
    out = out or Path(f"lem_results.{fmt}")
    if out.is_dir():
        raise ConfigError(f"-o: '{out}' is a directory; name the file to write")
    try:  # a missing folder is made, as `results plot -o` makes its own (only once there is something to write)
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"-o: '{out.parent}' exists and is not a directory") from None
    written = [atomic_write_bytes(out, frame_bytes(results_frame(experiments), fmt))]
    series = timeseries_frame(experiments)
    if series is not None:
        written.append(atomic_write_bytes(timeseries_target(out), frame_bytes(series, fmt)))
    return written
