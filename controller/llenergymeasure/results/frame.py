"""Results as pandas DataFrames: one row per experiment (``load_results``) and the power timeseries of every run
that kept one (``load_timeseries``). Column dtypes come from ``COLUMNS``, not from the values, so a column that is
null in every row (energy on a CPU run) keeps its type and a Parquet export has the same schema every time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from llenergymeasure.results.columns import COLUMNS, flatten
from llenergymeasure.results.discover import Experiment, find_experiments
from llenergymeasure.results.points import label_params, sweep_columns

if TYPE_CHECKING:
    import pandas as pd

_DTYPES = {"str": "string", "int": "Int64", "float": "Float64", "bool": "boolean", "datetime": "datetime64[ns, UTC]"}


def results_frame(experiments: Sequence[Experiment]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame([flatten(e) for e in experiments], columns=[c.name for c in COLUMNS])
    for c in COLUMNS:
        if c.kind == "datetime":
            frame[c.name] = pd.to_datetime(frame[c.name], utc=True)
        else:
            frame[c.name] = frame[c.name].astype(_DTYPES[c.kind])
    # one column per parameter a study point sets, beside study_point (values as the label wrote them)
    at = frame.columns.get_loc("study_point") + 1
    for i, name in enumerate(sweep_columns([e.label for e in experiments])):
        key = name.removeprefix("sweep.")
        frame.insert(at + i, name, pd.array([label_params(e.label).get(key) for e in experiments], dtype="string"))
    return frame


def load_results(directory: str | Path = "results") -> pd.DataFrame:
    """Every experiment under ``directory`` (single runs and study sub-runs, failed ones included with
    ``status == 'failed'``) as one row each; columns are documented in docs/results-columns.md."""
    return results_frame(find_experiments(Path(directory)))


def timeseries_frame(experiments: Sequence[Experiment]) -> pd.DataFrame | None:
    """The runs' timeseries.parquet files stacked, ``experiment_id`` first; None when no run kept one."""
    import pandas as pd
    import pyarrow.parquet as pq

    parts = []
    for e in experiments:
        path = timeseries_path(e)
        if path is None:
            continue
        part = pq.read_table(path).to_pandas()
        part.insert(0, "experiment_id", e.experiment_id)
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else None


def timeseries_path(experiment: Experiment) -> Path | None:
    """The run's timeseries file, when its result names one and it is there."""
    r = experiment.result
    if r is None or not r.energy.timeseries_file:
        return None
    path = experiment.path / r.energy.timeseries_file
    return path if path.is_file() else None


def load_timeseries(directory: str | Path = "results") -> pd.DataFrame | None:
    """The power timeseries of every run under ``directory`` that kept one (t_s from the window start, device,
    power_w, …) with an ``experiment_id`` column; None when none did."""
    return timeseries_frame(find_experiments(Path(directory)))
