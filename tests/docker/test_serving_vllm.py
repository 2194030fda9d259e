"""Serving for real in the vLLM CPU image: a study of two Poisson rates and a multi-turn run (8 conversations x 4
turns, serving.conversations) against vLLM's own OpenAI server, started by the runner inside the container (network
none: loopback only), on the tiny model given a chat template. The three runs share one server (one engine session,
one container): each later run gets it once it is idle and its prefix cache has been emptied (POST
/reset_prefix_cache, answered 200 by the real server)."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
from conftest import run_lem, write_yaml
from lem_runner.contract import ExperimentResult

pytestmark = pytest.mark.docker

#: a chat template of our own (the tiny model has none): role tags a plain concatenation would never write
TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def templated_model(tiny_model_path, tmp_path_factory):
    """The tiny model with a chat template in its tokenizer: the multi-turn run must render history through it."""
    from transformers import AutoTokenizer

    target = tmp_path_factory.mktemp("tiny-templated") / "model"
    shutil.copytree(tiny_model_path, target)
    tok = AutoTokenizer.from_pretrained(target)
    tok.chat_template = TEMPLATE
    tok.save_pretrained(target)
    return target


def test_two_rates_and_multi_turn_against_the_vllm_server_in_its_image(tmp_path, templated_model, vllm_cpu_image,
                                                                        no_leftover_containers):
    study = write_yaml(tmp_path / "rates.yaml", f"""\
name: rates
base:
  model: {templated_model}
  backend: vllm
  scenario: serving
  dtype: float32
  max_input_tokens: 64
  max_output_tokens: 4
  force_output_length: true
  vllm: {{max_model_len: 256, enforce_eager: true, enable_prefix_caching: true}}
  serving:
    arrival: poisson
    n_requests: 6
    warmup_requests: 1
    input_tokens: {{dist: fixed, value: 8}}
    slo: {{ttft_ms: 30000}}
groups:
  load:
    - {{serving.rate: 2}}
    - {{serving.rate: 8}}
    - serving.rate: 4
      serving.n_requests: null
      serving.input_tokens: null
      serving.conversations: {{n_conversations: 8, turns: 4, user_tokens: {{value: 4}},
                              think_time: {{value: 0.05}}}}
""")
    proc = run_lem("run", str(study), "-o", str(tmp_path / "r"), "--isolated", timeout=900)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (study_dir,) = (tmp_path / "r").iterdir()
    summary = json.loads((study_dir / "study_summary.json").read_text())
    assert [e["status"] for e in summary["experiments"]] == ["done", "done", "done"]
    rates, engines, logs = {}, [], []
    run_dirs = [p for p in study_dir.iterdir() if (p / "result.json").exists()]
    for run_dir in sorted(run_dirs, key=lambda p: json.loads((p / "result.json").read_text())["start_time"]):
        r = ExperimentResult.model_validate_json((run_dir / "result.json").read_text())
        s = r.serving
        engines.append(r.engine)
        logs.append((run_dir / "server.log").read_text())
        if s.conversations is not None:
            check_multi_turn(r, pq.read_table(run_dir / "requests.parquet").to_pylist(), templated_model)
            continue
        rates[s.offered_rate_rps] = s
        assert (s.n_requests, s.n_ok) == (6, 6) and r.output_tokens == 24 and r.whole_run.input_tokens == 48
        table = pq.read_table(run_dir / "requests.parquet").to_pylist()
        assert len(table) == 6 and all(sum(row["chunk_tokens"]) == 4 for row in table)  # counts from usage
        # vLLM may stream two tokens in one chunk: ITL is per chunk gap
        assert s.ttft.n == 6 and s.tpot.n == 6 and s.e2e.n == 6
        assert s.itl.n == sum(len(row["chunk_times_s"]) - 1 for row in table)
        assert s.n_good == 6 and s.goodput_rps > 0 and s.achieved_rate_rps > 0
        assert s.server.startswith("vllm")
        # what the server ran, read back from it: its engine-config log line and its /v1/models card
        resolved = r.engine_settings["resolved"]
        assert r.backend_details["dtype"] == resolved["dtype"] == "float32" and resolved["max_model_len"] == 256
        assert resolved["enable_prefix_caching"] is True and resolved["enforce_eager"] is True
        # eager on CPU: the server runs with dynamo off, as the offline engine does (one helper, said in the details)
        assert r.backend_details["torchdynamo_disable"] == "1" and "C++ compiler" in r.backend_details["torchdynamo_disable_reason"]
        assert r.total_energy_j is None and s.energy_unavailable_reason
    assert set(rates) == {2.0, 8.0}
    fresh, *kept = engines
    assert fresh.fresh and [(k.fresh, k.runs_served) for k in kept] == [(False, 1), (False, 2)]
    for k in kept:
        assert fresh.server_pid == k.server_pid and fresh.pid == k.pid and fresh.session == k.session
        assert k.reset == ["POST /reset_prefix_cache"] and k.load_s == fresh.load_s
    assert fresh.reset == [] and fresh.load_s > 0
    starts = sorted(x.server_start_s or 0 for x in rates.values())
    assert starts[0] == 0 and starts[1] > 0  # one start-up, in the first run; the kept server's run started none
    # vLLM's start-up is in the first run's log only; the second run's share has the server's own word on the reset
    assert "Starting vLLM server on" in logs[0] and all("Starting vLLM server on" not in x for x in logs[1:])
    # each run empties the cache after its warmup (its warmup prompts are outside the plan too); the kept server's
    # runs also before it, at the hand-over
    assert [x.count("Resetting prefix cache") for x in logs] == [1, 2, 2]


def check_multi_turn(r: ExperimentResult, table: list[dict], model) -> None:
    """8 conversations x 4 turns on vLLM: per-turn and per-conversation figures, conversation_id/turn per request,
    each prompt rendered by the model's chat template (turn 0's prompt-token count, from vLLM's usage, is that of the
    template's rendering computed here with the tokenizer, not the plain role-label one)."""
    from lem_runner.serving.conversations import TEMPLATED, plan_conversations
    from transformers import AutoTokenizer

    s, c = r.serving, r.serving.conversations
    assert (s.n_requests, s.n_ok) == (32, 32) and r.output_tokens == 32 * 4
    assert (c.n_conversations, c.n_complete, c.turns_sent) == (8, 8, 32) and c.prompt_format == TEMPLATED
    assert [(t.turn, t.n, t.n_ok) for t in c.by_turn] == [(k, 8, 8) for k in range(4)]
    assert all(t.ttft_p50_ms > 0 and t.tpot_p50_ms > 0 and t.e2e_p50_ms >= t.ttft_p50_ms for t in c.by_turn)
    ins = [t.input_tokens_mean for t in c.by_turn]
    assert ins == sorted(ins) and len(set(ins)) == 4, ins  # the history grows turn by turn
    assert c.duration_mean_s >= 3 * 0.05 and c.think_lag_p50_ms is not None and c.think_lag_p99_ms >= 0
    assert c.energy_per_conversation_mean_j is None and c.by_turn[0].energy_j is None and s.energy_unavailable_reason
    assert sorted((row["conversation_id"], row["turn"]) for row in table) == [(i, k) for i in range(8)
                                                                                for k in range(4)]
    # each later turn was sent no sooner than its previous answer's end + the think time
    rows = {(row["conversation_id"], row["turn"]): row for row in table}
    assert all(rows[i, k]["submit_s"] >= rows[i, k - 1]["end_s"] + 0.05 - 1e-3 for i in range(8) for k in range(1, 4))
    cfg = r.config
    convs = plan_conversations(cfg.serving.conversations, cfg.serving.arrival, cfg.serving.rate, 1.0,
                               cfg.max_output_tokens, cfg.seed if cfg.serving.seed is None else cfg.serving.seed)
    tok = AutoTokenizer.from_pretrained(model)
    for conv in convs:
        rendered = f"<|user|>{conv.users[0]}\n<|assistant|>"
        assert rows[conv.id, 0]["input_tokens"] == len(tok(rendered)["input_ids"]), conv.id
        assert len(tok(rendered)["input_ids"]) != len(tok(f"User: {conv.users[0]}\nAssistant:")["input_ids"])
