"""The exchange protocol, identical for every launcher.

The controller writes ``request.json`` into an exchange directory and starts ``python -m lem_runner --config
request.json --out DIR`` (as a subprocess or in a container with DIR mounted). The runner prints one JSON object
per line on stdout (progress events) and leaves exactly one of ``result.json`` or ``error.json`` in DIR.

An engine session (``python -m lem_runner --session SDIR``) measures several runs on one loaded engine. The controller
writes ``SDIR/request-0001.json``, waits for that run's ``done`` or ``error`` event (``data.request`` = 1), records it,
then writes ``request-0002.json``, and so on; each request's ``out_dir`` is that run's own folder, where the runner
leaves its ``result.json`` or ``error.json`` exactly as for a single run. The file ``SDIR/end`` closes the session
(the runner unloads and exits 0). The first failed run ends the session (its engine's state is unknown): the runner
exits with that run's exit code and the controller starts a new session for the rest. Files only, so it works in a
container without network and on shared storage.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lem_runner.contract.config import ExperimentConfig
from lem_runner.contract.energy import IdleBaseline
from lem_runner.contract.operating_point import GpuSetting
from lem_runner.contract.quality import FidelityRequest
from lem_runner.contract.workload import WorkloadItem

REQUEST_FILE = "request.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.json"
SESSION_END_FILE = "end"


def session_request_file(n: int) -> str:
    """The name of an engine session's ``n``-th request (from 1)."""
    return f"request-{n:04d}.json"

#: Exit codes of the runner process.
EXIT_OK, EXIT_FAILED, EXIT_BAD_REQUEST = 0, 1, 2


class RunRequest(BaseModel):
    """What the controller asks of one runner process."""

    model_config = ConfigDict(extra="forbid")

    experiment_id: str
    config: ExperimentConfig
    model_path: str = Field(..., description="where this process loads the model from (a container path, say)")
    prompts_path: str | None = Field(None, description="where this process reads a JSONL prompts file from")
    task_path: str | None = Field(None, description="where this process reads quality.task.path's file from (a "
                                  "container's copy of it); None: the config's own path")
    local_devices: list[int] | None = Field(
        None, description="the config's GPUs as this process numbers them (a container renumbers its GPUs from 0)"
    )
    device_uuids: list[str] | None = Field(
        None, description="the config's GPUs by UUID, in config order, resolved by the controller on the host (a "
                          "container's NVML renumbers them); the runner binds the engine to exactly these")
    image: str | None = Field(None, description="image id, when launched in a container")
    cached_baselines: list[IdleBaseline] = Field(
        default_factory=list, description="earlier idle baselines the controller kept for this backend and these "
        "devices, newest first; under energy.baseline mode 'cached' the runner reuses the one taken under the same "
        "device conditions, after a spot-check")
    gpu_settings: list[GpuSetting] = Field(
        default_factory=list, description="the operating point the controller applied (gpu: section), per GPU"
    )
    serving_workload: list[WorkloadItem] | None = Field(
        None, description="scenario serving: the trace or dataset the controller read (the runner opens no host file)"
    )
    fidelity: FidelityRequest | None = Field(
        None, description="a study with quality.reference: whether this run is the reference, else the reference's "
        "outputs it is compared with (the runner opens no host file)")
    out_dir: str | None = Field(
        None, description="engine session: this run's folder as this process sees it (result.json / error.json go "
        "there); a single run writes to --out")


EventKind = Literal["started", "model_loaded", "baseline", "warmup", "progress", "measured", "done", "error"]


class ProgressEvent(BaseModel):
    """One line of runner stdout."""

    model_config = ConfigDict(extra="forbid")

    event: EventKind
    message: str = ""
    done: int | None = Field(None, description="requests finished in the window so far")
    total: int | None = None
    data: dict[str, str | int | float | bool | None] = Field(default_factory=dict)

    def to_line(self) -> str:
        return self.model_dump_json(exclude_defaults=True)


class RunError(BaseModel):
    """Contents of ``error.json``: why the run produced no result."""

    model_config = ConfigDict(extra="forbid")

    experiment_id: str | None = None
    error_type: str
    message: str
    phase: str = Field(..., description="where it failed: request, config (a setting the engine refused before loading), load, baseline, warmup, measure, analyse, write")
    traceback: str | None = None
    status: Literal["failed", "interrupted"] = Field(
        "failed", description="interrupted: stopped by a signal (Ctrl-C, SIGTERM, SIGHUP), not a failure of the run"
    )
    requests_done: int | None = Field(
        None, description="interrupted while measuring: requests already finished in the window; their measurement "
        "was dropped (a window cut short is not a result)"
    )


def parse_event(line: str) -> ProgressEvent | None:
    """A progress event from one stdout line, or None for a line that is not one (a stray library print)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        return ProgressEvent.model_validate(json.loads(line))
    except (ValueError, ValidationError, RecursionError):
        return None
