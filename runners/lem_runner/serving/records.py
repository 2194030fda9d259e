"""Per-request records of a serving run, written as requests.parquet beside result.json (atomically)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lem_runner.contract.atomic import atomic_write_bytes

FILE_NAME = "requests.parquet"


@dataclass
class RequestRecord:
    """One request as the client saw it; times on the runner's clock (perf_counter seconds)."""

    index: int
    scheduled: float | None  # when the schedule wanted it sent (open loop), None in a closed loop
    submit: float
    first_token: float | None = None
    prefill_start: float | None = None  # server-side start of its prefill, where the engine exposes it
    end: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    input_tokens: int | None = None  # from the server's usage
    output_tokens: int = 0
    status: str = "pending"  # ok | error | timeout
    error: str | None = None
    energy_j: float | None = None  # attributed after the run (see figures)
    adjusted_energy_j: float | None = None  # the same attribution of idle-adjusted energy (signed)
    conversation_id: int | None = None  # multi-turn (serving.conversations): its conversation and turn (from 0)
    turn: int | None = None
    prefix_group: int | None = None  # serving.shared_prefix: which shared prefix its prompt started with
    text: str = ""  # the streamed answer text (a conversation's next prompt carries it)
    reasoning_seen: bool = False  # the stream carried reasoning apart from the answer (a reasoning parser)
    first_answer_token: float | None = None  # the first chunk with answer text (not reasoning)
    chunk_reasoning: list[bool] = field(default_factory=list)  # per chunk: it carried reasoning text

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def reasoning_tokens(self) -> int:
        """Output tokens of the chunks that carried reasoning text (docs/method.md, reasoning and answer tokens)."""
        return sum(n for n, r in zip(self.chunk_tokens, self.chunk_reasoning) if r)

    @property
    def answer_tokens(self) -> int:
        return self.output_tokens - self.reasoning_tokens


def write_requests(records: list[RequestRecord], path: Path, origin: float) -> Path:
    """One row per request, times in seconds from ``origin`` (the load window's start)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def rel(t):
        return None if t is None else t - origin

    separated = any(r.reasoning_seen for r in records)  # else neither count is known: null, not 0 reasoning

    columns = {
        "request": [r.index for r in records],
        "scheduled_s": [rel(r.scheduled) for r in records],
        "submit_s": [rel(r.submit) for r in records],
        "first_token_s": [rel(r.first_token) for r in records],
        "first_answer_token_s": [rel(r.first_answer_token) for r in records],  # = first_token_s without reasoning
        "prefill_start_s": [rel(r.prefill_start) for r in records],
        "end_s": [rel(r.end) for r in records],
        "input_tokens": [r.input_tokens for r in records],
        "output_tokens": [r.output_tokens for r in records],
        "reasoning_tokens": [r.reasoning_tokens if separated else None for r in records],
        "answer_tokens": [r.answer_tokens if separated else None for r in records],
        "status": [r.status for r in records],
        "error": [r.error for r in records],
        "energy_j": [r.energy_j for r in records],
        "adjusted_energy_j": [r.adjusted_energy_j for r in records],
        "chunk_times_s": [[t - origin for t in r.chunk_times] for r in records],
        "chunk_tokens": [list(r.chunk_tokens) for r in records],
        "conversation_id": [r.conversation_id for r in records],
        "turn": [r.turn for r in records],
        "prefix_group": [r.prefix_group for r in records],
    }
    schema = pa.schema([("request", pa.int64()), ("scheduled_s", pa.float64()), ("submit_s", pa.float64()),
                        ("first_token_s", pa.float64()), ("first_answer_token_s", pa.float64()),
                        ("prefill_start_s", pa.float64()),
                        ("end_s", pa.float64()), ("input_tokens", pa.int64()),
                        ("output_tokens", pa.int64()), ("reasoning_tokens", pa.int64()),
                        ("answer_tokens", pa.int64()), ("status", pa.string()), ("error", pa.string()),
                        ("energy_j", pa.float64()), ("adjusted_energy_j", pa.float64()),
                        ("chunk_times_s", pa.list_(pa.float64())), ("chunk_tokens", pa.list_(pa.int64())),
                        ("conversation_id", pa.int64()), ("turn", pa.int64()),
                        ("prefix_group", pa.int64())])
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns, schema=schema), sink)
    return atomic_write_bytes(path, sink.getvalue().to_pybytes())
