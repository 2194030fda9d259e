"""The load generator against a stub OpenAI server on loopback (real sockets, real HTTP streaming): records, token
counts from usage, timeouts, malformed chunks, refused connections, and the schedule kept."""

from __future__ import annotations

import socket

from lem_runner.serving.client import LoadSpec, run_load
from lem_runner.serving.planned import PlannedRequest
from serving_stub import StubServer


def _spec(url: str, **kw) -> LoadSpec:
    base = dict(base_url=url, model="m", closed_loop_clients=None, duration_s=None, timeout_s=5.0, ignore_eos=True,
                sampling={"temperature": 0})
    return LoadSpec(**{**base, **kw})


def test_streamed_requests_are_recorded_chunk_by_chunk():
    with StubServer(ttft_s=0.05, token_delay_s=0.01) as stub:
        plan = [PlannedRequest(i, 0.02 * i, [5, 6, 7], 6) for i in range(10)]
        records, t0 = run_load(_spec(stub.base_url), plan)
    assert [r.status for r in records] == ["ok"] * 10
    for r in records:
        assert r.output_tokens == 6 and r.chunk_tokens == [1] * 6 and r.input_tokens == 3
        assert r.submit <= r.first_token <= r.chunk_times[-1] <= r.end
        assert 0.045 <= r.first_token - r.submit <= 0.5  # the stub waits 50 ms before its first token
        assert (r.chunk_times[-1] - r.chunk_times[0]) / 5 >= 0.009  # 10 ms between the stub's tokens
        assert 0 <= r.submit - r.scheduled < 0.05 and abs(r.scheduled - t0 - plan[r.index].arrival_s) < 1e-9


def test_open_loop_requests_go_out_on_connections_opened_before_the_load():
    # the generator opens its pool first (GET /v1/models), so no arrival waits for a TCP connect
    with StubServer(ttft_s=0.05) as stub:
        plan = [PlannedRequest(i, 0.001 * i, [5], 2) for i in range(6)]
        records, _ = run_load(_spec(stub.base_url), plan)
        warmed, used = stub.peers["models"], stub.peers["completions"]
    assert [r.status for r in records] == ["ok"] * 6
    assert len(set(warmed)) == 6 and set(used) <= set(warmed)


def test_timeouts_malformed_chunks_and_http_errors_are_counted_not_dropped():
    with StubServer() as stub:
        plan = [PlannedRequest(0, 0.0, "hang", 4), PlannedRequest(1, 0.0, "malformed", 4),
                PlannedRequest(2, 0.0, "http500", 4), PlannedRequest(3, 0.0, "fine", 4)]
        records, _ = run_load(_spec(stub.base_url, timeout_s=0.5), plan)
    by = {r.index: r for r in records}
    assert by[0].status == "timeout" and "0.5 s" in by[0].error
    assert by[1].status == "error" and "not JSON" in by[1].error
    assert by[2].status == "error" and "HTTP 500" in by[2].error
    assert by[3].status == "ok" and by[3].output_tokens == 4


def test_a_closed_loop_keeps_n_requests_in_flight_and_a_dead_server_is_an_error():
    with StubServer(token_delay_s=0.01) as stub:
        plan = [PlannedRequest(i, None, "x", 5) for i in range(12)]
        records, _ = run_load(_spec(stub.base_url, closed_loop_clients=3), plan)
    assert all(r.ok for r in records) and len(records) == 12
    events = sorted([(r.submit, 1) for r in records] + [(r.end, -1) for r in records])
    level = peak = 0
    for _, d in events:
        level += d
        peak = max(peak, level)
    assert peak == 3
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    (rec,) = run_load(_spec(f"http://127.0.0.1:{port}/v1"), [PlannedRequest(0, 0.0, "x", 2)])[0]
    assert rec.status == "error" and "Connect" in rec.error


def test_time_to_first_answer_token_is_the_first_chunk_after_the_reasoning():
    """The stub streams 3 reasoning chunks then the answer, 40 ms apart after a 50 ms first token: the first answer
    token comes >= 50 + 3 x 40 = 170 ms after submission, >= 120 ms after the first token; TTFT is unchanged."""
    from lem_runner.contract.serving import SLOConfig
    from lem_runner.serving.figures import NOT_SEPARATED, serving_figures

    with StubServer(ttft_s=0.05, token_delay_s=0.04, reasoning_tokens=3) as stub:
        plan = [PlannedRequest(i, 0.01 * i, [5, 6], 6) for i in range(4)] + [PlannedRequest(4, 0.05, [5], 2)]
        records, _ = run_load(_spec(stub.base_url), plan)
    assert [r.status for r in records] == ["ok"] * 5 and all(r.reasoning_seen for r in records)
    for r in records[:4]:
        assert r.output_tokens == 6 and [w.split("t")[1] for w in r.text.split()] == ["3", "4", "5"]  # the answer
        assert 0.17 <= r.first_answer_token - r.submit < 0.5 and r.first_answer_token - r.first_token >= 0.115
        assert 0.045 <= r.first_token - r.submit < 0.3
    assert records[4].first_answer_token is None  # 2 tokens: still reasoning when cut
    f = serving_figures(records, arrival="poisson", offered_rate=1.0, clients=None, slo=SLOConfig(),
                        energy_between=None, energy_reason="none here", baseline_w=None)
    assert f.ttfat.n == 4 and f.ttfat_not_reached == 1 and f.ttfat_unavailable_reason is None
    assert f.ttfat.p50_ms >= 170 and f.ttft.p50_ms < f.ttfat.p50_ms - 115
    # a stream without reasoning: not separated, said so
    with StubServer() as stub:
        plain, _ = run_load(_spec(stub.base_url), [PlannedRequest(0, 0.0, [5], 3)])
    g = serving_figures(plain, arrival="poisson", offered_rate=1.0, clients=None, slo=SLOConfig(),
                        energy_between=None, energy_reason="none here", baseline_w=None)
    assert g.ttfat is None and g.ttfat_unavailable_reason == NOT_SEPARATED and plain[0].first_answer_token


def test_the_chat_route_sends_messages_and_counts_reasoning_and_answer_tokens_apart(tmp_path):
    """vLLM's chat stream behind a reasoning parser: a role-only opening chunk, 3 tokens in ``delta.reasoning``,
    then ``delta.content``, 40 ms apart after a 50 ms first token. The opening chunk is no token; the first answer
    token is the 4th token's chunk, so TTFAT >= 50 + 3 x 40 = 170 ms; 3 reasoning and 3 answer tokens per request,
    in the figures and in requests.parquet."""
    import pyarrow.parquet as pq
    from lem_runner.contract.serving import SLOConfig
    from lem_runner.serving.figures import serving_figures
    from lem_runner.serving.records import write_requests

    with StubServer(ttft_s=0.05, token_delay_s=0.04, reasoning_tokens=3) as stub:
        plan = [PlannedRequest(i, 0.01 * i, f"question {i}", 6) for i in range(4)] + \
            [PlannedRequest(4, 0.05, "short", 2)]
        records, t0 = run_load(_spec(stub.base_url, chat=True), plan)
        routes, prompts = list(stub.routes), [p for kind, p in stub.events if kind == "completion"]
    assert routes == ["/v1/chat/completions"] * 5
    assert sorted(p[0]["content"] for p in prompts) == ["question 0", "question 1", "question 2", "question 3",
                                                        "short"]
    assert all(p == [{"role": "user", "content": p[0]["content"]}] for p in prompts)
    assert [r.status for r in records] == ["ok"] * 5 and all(r.reasoning_seen for r in records)
    for r in records[:4]:
        assert r.output_tokens == 6 and r.chunk_tokens == [1] * 6  # the role-only opening chunk counts no token
        assert (r.reasoning_tokens, r.answer_tokens) == (3, 3)
        assert r.first_answer_token == r.chunk_times[3]  # the 4th token's chunk
        assert 0.17 <= r.first_answer_token - r.submit < 0.5 and 0.045 <= r.first_token - r.submit < 0.3
        assert [w.split("t")[1] for w in r.text.split()] == ["3", "4", "5"]  # the answer alone
    assert (records[4].reasoning_tokens, records[4].answer_tokens, records[4].first_answer_token) == (2, 0, None)
    f = serving_figures(records, arrival="poisson", offered_rate=1.0, clients=None, slo=SLOConfig(),
                        energy_between=None, energy_reason="none here", baseline_w=None)
    assert (f.reasoning_tokens, f.answer_tokens) == (14, 12) and f.ttfat.n == 4 and f.ttfat_not_reached == 1
    assert f.reasoning_tokens_mean == 14 / 5 and f.answer_tokens_mean == 12 / 5
    write_requests(records, tmp_path / "requests.parquet", t0)
    table = pq.read_table(tmp_path / "requests.parquet").to_pylist()
    assert [(row["reasoning_tokens"], row["answer_tokens"]) for row in table] == [(3, 3)] * 4 + [(2, 0)]


def test_without_reasoning_in_the_stream_the_token_split_is_null_not_zero(tmp_path):
    import pyarrow.parquet as pq
    from lem_runner.serving.records import write_requests

    with StubServer() as stub:
        records, t0 = run_load(_spec(stub.base_url), [PlannedRequest(0, 0.0, [5], 3)])
    write_requests(records, tmp_path / "requests.parquet", t0)
    (row,) = pq.read_table(tmp_path / "requests.parquet").to_pylist()
    assert row["output_tokens"] == 3 and row["reasoning_tokens"] is None and row["answer_tokens"] is None
