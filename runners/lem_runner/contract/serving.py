"""The ``serving:`` section: how lem's load generator drives an OpenAI-compatible server (``scenario: serving``).

Arrival processes, request lengths, bounds of the run and latency targets (SLO). Every value is checked here, so
`lem config validate` refuses what `lem run` would; files (a trace, a dataset) are read by the controller before
the run and handed to the runner as data.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lem_runner.contract.capacity import CapacityConfig, check_capacity
from lem_runner.contract.conversation import ConversationConfig
from lem_runner.contract.lengths import LengthDistribution
from lem_runner.contract.shared_prefix import SharedPrefixConfig

_UNIT_RE = re.compile(r"^\s*[0-9.]+\s*(ms|s|sec|us|µs|min)\s*$", re.IGNORECASE)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SLOConfig(_Section):
    """Latency targets in milliseconds; a request meets the SLO when it finished without error and meets every
    bound given. Any subset; none: goodput is not computed."""

    ttft_ms: float | None = Field(None, ge=0.1, le=3_600_000, description="time to first token bound (ms)")
    tpot_ms: float | None = Field(None, ge=0.01, le=3_600_000, description="time per output token after the first (ms)")
    e2e_ms: float | None = Field(None, ge=0.1, le=3_600_000, description="end-to-end latency bound (ms)")

    @field_validator("ttft_ms", "tpot_ms", "e2e_ms", mode="before")
    @classmethod
    def _plain_milliseconds(cls, v):
        if isinstance(v, str) and _UNIT_RE.match(v):
            raise ValueError(f"give a number of milliseconds (e.g. 200), not '{v}': the unit is in the field's name")
        return v

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2e_ms))


class DatasetConfig(_Section):
    """Prompts and output lengths from a JSONL file: ``sharegpt`` (``conversations``: a list of {from, value};
    the first human turn is the prompt and the reply's length the output length) or ``prompts`` (``prompt`` and an
    optional ``output_tokens`` per line). Read by the controller before the run."""

    path: str = Field(..., min_length=1, description="JSONL file")
    format: Literal["sharegpt", "prompts"] = "sharegpt"


class ServingConfig(_Section):
    """The load: arrivals, lengths, bounds, targets. ``poisson``/``gamma``/``constant`` are open loop at ``rate``
    requests/s (gamma: ``burstiness`` is the shape; 1 is Poisson, < 1 burstier); ``concurrency`` is a closed loop
    of ``concurrency`` clients each sending its next request when the last one ends; ``trace`` replays the arrival
    times (and lengths) of a JSONL of {timestamp (s or ms, see trace_time_unit), input_length, output_length}."""

    arrival: Literal["constant", "poisson", "gamma", "concurrency", "trace"] = "poisson"
    rate: float | None = Field(None, gt=0, le=100_000,
                               description="offered requests per second (constant/poisson/gamma; required there unless "
                                           "capacity searches it)")
    burstiness: float = Field(1.0, gt=0, le=100, description="gamma shape: 1 = Poisson, < 1 burstier, > 1 smoother")
    concurrency: int | None = Field(None, ge=1, le=100_000, description="closed-loop clients (arrival: concurrency)")
    trace: str | None = Field(None, min_length=1, description="JSONL trace file (arrival: trace)")
    trace_time_unit: Literal["s", "ms"] = Field("ms", description="unit of the trace's timestamps (Mooncake: ms)")
    n_requests: int | None = Field(None, ge=1, le=1_000_000, description="requests to send (default: n_prompts)")
    duration_s: float | None = Field(None, gt=0, le=86400, description="stop issuing requests after this span")
    input_tokens: LengthDistribution | None = Field(
        None, description="prompt length per request; None: the experiment's prompts as they are")
    output_tokens: LengthDistribution | None = Field(
        None, description="output length per request; None: max_output_tokens for every request")
    dataset: DatasetConfig | None = Field(None, description="prompts (and output lengths) from a JSONL dataset")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="seeds arrivals and lengths; None: the experiment's")
    request_timeout_s: float = Field(120.0, gt=0, le=86400, description="a request still open after this is a timeout")
    slo: SLOConfig = SLOConfig()
    endpoint: str | None = Field(
        None, description="an OpenAI-compatible server already running on this host (http://127.0.0.1:8000/v1): lem "
                          "drives it and starts no server")
    server_start_timeout_s: float = Field(900.0, gt=0, le=86400, description="longest wait for the health route")
    warmup_requests: int = Field(2, ge=0, le=10_000, description="requests sent one by one before the window")
    capacity: CapacityConfig | None = Field(
        None, description="search the highest rate (or clients) at which capacity.good_share of requests meet slo; "
                          "each probe is this load at the probe's rate (docs/method.md, capacity search)")
    conversations: ConversationConfig | None = Field(
        None, description="multi-turn conversations (GuideLLM/AIPerf: multi-turn sessions): each turn's prompt is the "
                          "history so far plus a new user message; rate is then new conversations per second")
    shared_prefix: SharedPrefixConfig | None = Field(
        None, description="a shared system prompt of shared_prefix.tokens ahead of every request's prompt "
                          "(shared_prefix.groups distinct ones), so a server's prefix cache is exercised")

    @field_validator("endpoint")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/\-]*)?", v):
            raise ValueError("give an http(s) URL such as http://127.0.0.1:8000/v1")
        return v.rstrip("/") if v else v

    @model_validator(mode="after")
    def _arrival_needs(self) -> ServingConfig:
        open_loop = self.arrival in ("constant", "poisson", "gamma")
        if not open_loop and self.rate is not None:
            raise ValueError(f"rate is only used with arrival constant, poisson or gamma, not '{self.arrival}'")
        if self.arrival == "concurrency" and self.concurrency is None and self.capacity is None:
            raise ValueError("arrival 'concurrency' needs concurrency (number of clients)")
        if self.arrival != "concurrency" and self.concurrency is not None:
            raise ValueError(f"concurrency is only used with arrival 'concurrency', not '{self.arrival}'")
        if self.arrival == "trace" and self.trace is None:
            raise ValueError("arrival 'trace' needs trace (a JSONL file)")
        if self.arrival != "trace" and self.trace is not None:
            raise ValueError(f"trace is only used with arrival 'trace', not '{self.arrival}'")
        if self.burstiness != 1.0 and self.arrival != "gamma":
            raise ValueError(f"burstiness is only used with arrival 'gamma', not '{self.arrival}'")
        if self.n_requests is not None and self.duration_s is not None:
            raise ValueError("give n_requests or duration_s, not both")
        if self.arrival == "gamma" and self.rate is None and self.capacity is None:
            raise ValueError("arrival 'gamma' needs rate (requests per second)")
        if self.dataset is not None and self.input_tokens is not None:
            raise ValueError("dataset gives the prompts: input_tokens would be ignored")
        if self.conversations is not None and self.capacity is not None:
            raise ValueError("capacity searches single-turn load only: drop capacity or conversations")
        check_capacity(self)
        if self.conversations is not None and self.shared_prefix is not None:
            raise ValueError("shared_prefix is for single-turn requests: a conversation's history is its own shared "
                             "prefix; drop shared_prefix or conversations")
        if self.conversations is not None and (self.arrival == "trace" or self.dataset or self.input_tokens
                                               or self.n_requests):
            raise ValueError("conversations set their own prompts and count: drop arrival 'trace', dataset, "
                             "input_tokens and n_requests")
        return self
