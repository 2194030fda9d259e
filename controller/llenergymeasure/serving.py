"""Host side of the serving scenario: read a trace or dataset file named in the config, before anything runs."""

from __future__ import annotations

from lem_runner.contract import ExperimentConfig
from lem_runner.contract.workload import WorkloadError, WorkloadItem, read_conversations, read_dataset, read_trace

from llenergymeasure.errors import ConfigError


def serving_workload(config: ExperimentConfig, source: str = "config") -> list[WorkloadItem] | None:
    """The trace's or dataset's requests (at most as many as the run sends), or None when the config names no file.
    ConfigError, naming the field and the file's line, for a missing or malformed one."""
    if config.scenario != "serving":
        return None
    s = config.serving
    limit = s.n_requests or (config.n_prompts if s.duration_s is None and s.arrival != "trace" else 1_000_000)
    try:
        if s.conversations is not None and s.conversations.dataset is not None:
            return read_conversations(s.conversations.dataset, s.conversations.n_conversations)
        if s.arrival == "trace":
            return read_trace(s.trace or "", s.trace_time_unit, limit)
        if s.dataset is not None:
            return read_dataset(s.dataset.path, s.dataset.format, limit)
    except WorkloadError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return None
