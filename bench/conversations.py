"""Multi-turn correctness and think-time lag (serving.conversations; docs/method.md, "Multi-turn conversations").

lem's conversation driver (lem_runner.serving.conversations) against the stub OpenAI server of tests/serving_stub.py
in its own process (so it does not share this interpreter's lock; under SCHED_BATCH, as bench/serving.py), answers of ``--tokens`` tokens after 2 ms, 1 ms
apart. Two cases: an open loop (Poisson arrivals of new conversations) with a fixed think time, and a closed loop of
8 users with an exponential think time.

Truth from the server's side (GET /answers: each prompt it was sent, the text it streamed back, when each arrived
and ended, on CLOCK_MONOTONIC like the client's perf_counter):
- history: every turn's prompt is exactly the plain rendering of the conversation so far — the user messages of the
  plan and the answers the server actually streamed, in order — plus the new user message;
- think time kept: each later turn reached the server no sooner than the previous answer's end there + the think
  time drawn for it (never skipped);
- lag: the client's submission - (previous answer's end + think time), p50 / p99 / max in ms (the think_lag_* of
  the result, recomputed here from the records); none may be negative.
Target, from issue 28: lag p99 <= 5 ms with every prompt's history in order and no think time skipped. Writes
bench/results/conversations-<time>.json; every run is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from lem_runner.contract.conversation import ConversationConfig  # noqa: E402
from lem_runner.measurement.latency import percentile  # noqa: E402
from lem_runner.serving.client import LoadSpec  # noqa: E402
from lem_runner.serving.conversations import (  # noqa: E402
    conversation_figures,
    plain_prompt,
    plan_conversations,
    run_conversations,
)

TARGET_LAG_P99_MS = 5.0
#: (name, arrival, rate of new conversations, closed-loop users, think time)
CASES = [
    ("open loop, Poisson 16 conversations/s, fixed 20 ms think", "poisson", 16.0, None,
     {"dist": "fixed", "value": 0.02}),
    ("closed loop, 8 users, exponential think (mean 20 ms)", "concurrency", None, 8,
     {"dist": "exponential", "mean": 0.02}),
]


def run_case(case: tuple, n: int, turns: int, tokens: int, seed: int) -> dict:
    name, arrival, rate, users, think = case
    conv = ConversationConfig(n_conversations=n, turns=turns, user_tokens={"value": 6},
                              answer_tokens={"value": tokens}, think_time=think)
    convs = plan_conversations(conv, arrival, rate, 1.0, tokens, seed)
    # the stub under SCHED_BATCH, as in bench/serving.py: woken by a request, it does not preempt the generator
    stub = subprocess.Popen([sys.executable, str(ROOT / "tests" / "serving_stub.py"), "0.002", "0.001"],
                            stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0)))
    try:
        base = f"http://127.0.0.1:{int(stub.stdout.readline())}"
        spec = LoadSpec(f"{base}/v1", "stub", users, None, 30.0, False, {"temperature": 0})
        records, _ = run_conversations(spec, convs, plain_prompt)
        with urllib.request.urlopen(f"{base}/answers") as resp:
            answers = json.loads(resp.read())
    finally:
        stub.terminate()
        stub.wait(10)
    wrong, skipped, checked = [], [], 0
    for c in convs:
        mine = [a for a in answers if isinstance(a[0], str) and f"c{c.id}t0 " in a[0]]
        history: list[tuple[str, str]] = []
        for k, (prompt, text, arrived, _end) in enumerate(mine):
            history.append(("user", c.users[k]))
            checked += 1
            if prompt != plain_prompt(history):
                wrong.append((c.id, k))
            if k and arrived < mine[k - 1][3] + c.think_s[k - 1]:
                skipped.append((c.id, k, (arrived - mine[k - 1][3] - c.think_s[k - 1]) * 1000))
            history.append(("assistant", text))
    by_conv: dict[int, list] = {}
    for r in records:
        by_conv.setdefault(r.conversation_id, []).append(r)
    think = {c.id: c.think_s for c in convs}
    lags = sorted((rs[k].submit - (rs[k - 1].end + think[i][k - 1])) * 1000 for i, rs in by_conv.items()
                  for k in range(1, len(rs)))
    figures = conversation_figures(records, "plain")
    p99 = percentile(lags, 99)
    return {"case": name, "conversations": n, "turns": turns, "answer_tokens": tokens,
            "requests": len(records), "ok": sum(r.ok for r in records), "prompts_checked": checked,
            "history_wrong": wrong, "think_skipped": skipped, "lags": len(lags),
            "lag_p50_ms": percentile(lags, 50), "lag_p99_ms": p99, "lag_max_ms": lags[-1], "lag_min_ms": lags[0],
            "result_think_lag_p99_ms": figures.think_lag_p99_ms,
            "meets": (not wrong and not skipped and lags[0] >= 0 and p99 <= TARGET_LAG_P99_MS
                      and checked == n * turns == len(records))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conversations", type=int, default=32)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=8, help="tokens per answer")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    load_before = os.getloadavg()
    runs = []
    for case in CASES:
        runs.append(run_case(case, args.conversations, args.turns, args.tokens, args.seed))
        r = runs[-1]
        print(f"{r['case']}: {r['prompts_checked']} prompts, {len(r['history_wrong'])} with a wrong history, "
              f"{len(r['think_skipped'])} think times skipped; lag p50 {r['lag_p50_ms']:.2f} ms, "
              f"p99 {r['lag_p99_ms']:.2f} ms, max {r['lag_max_ms']:.2f} ms")
    out = {"target": {"lag_p99_ms": TARGET_LAG_P99_MS, "history": "every prompt in order",
                      "think": "never skipped, lag never negative"},
           "runs": runs, "worst_lag_p99_ms": max(r["lag_p99_ms"] for r in runs),
           "meets": all(r["meets"] for r in runs), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
           "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}}
    path = ROOT / "bench" / "results" / f"conversations-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}: {'meets' if out['meets'] else 'falls short of'} the target")


if __name__ == "__main__":
    main()
