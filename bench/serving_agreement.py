"""lem's load generator against vLLM's own serving benchmark (``vllm bench serve``) on the same vLLM server with the
same workload, in the vLLM CPU image: output tok/s and the TTFT / ITL / TPOT medians, lem / vLLM (target within 5 %).

One vLLM OpenAI server (``python -m vllm.entrypoints.openai.api_server``, the tiny random Llama of tests/tiny_model.py,
``--enforce-eager``, prefix caching off so a repeated prompt set is not cheaper the second time) serves both clients in
turn, interleaved (lem, vLLM, lem, vLLM, ...) so a change of load on this shared machine hits both alike. The
workload: ``--n`` requests of ``--input-len`` random token ids (vLLM: its ``random`` dataset, the same lengths),
``--output-len`` output tokens forced (``ignore_eos``), greedy, a closed loop of ``--concurrency`` clients (vLLM:
``--request-rate inf --max-concurrency N``) — deterministic, unlike two differently seeded Poisson draws.
lem's side is the serving scenario's own code: ``run_load`` (client.py) and ``serving_figures`` (figures.py).
The console script ``vllm`` fails in the CPU build (no metadata for "vllm"), so vLLM's benchmark is called through its
module (``vllm.benchmarks.serve``: ``add_cli_args`` and ``main``). Figures of each round, their medians, each round's
lem / vLLM ratio and the median of those ratios (the compared figure) go to bench/results/serving-agreement-<time>.json.

Open loop (``--open-rounds``, default 5): one Poisson schedule (``--open-rate`` req/s, ``--open-n`` requests of
``--open-input-len`` → ``--open-output-len`` tokens, drawn once by lem's own generator) is written as a trace file and
replayed through both clients: lem through its ``trace`` arrival (``read_trace`` → ``plan_requests`` → ``run_load``),
vLLM through its own request function (``async_request_openai_completions``, the one ``vllm bench serve`` calls for
``--backend vllm``/``openai``) fired at the same offsets as ``vllm bench serve``'s ``get_request`` fires its own (sleep to
the offset, ``create_task``), with the same token-id prompts; vLLM's figures are its own per-request fields (``ttft``,
``itl``, ``latency``, ``output_tokens``) reduced the way its ``calculate_metrics`` does (TPOT = (latency − ttft) /
(output tokens − 1); medians). Why this row exists: beside ``vllm bench serve --request-rate 4`` lem's medians read
0.90–0.93 of vLLM's, because the two clients drew different schedules — lem a Poisson process seeded by the config's
seed (first arrival at 0; seed 42, 64 requests at 4 req/s realise 2.99 req/s over 21.1 s), vLLM numpy's gamma draws
rescaled so the last arrival lands at exactly n / rate (≈ 4.0 req/s over 16 s for any seed). With a fixed seed each side
replays its own realisation every round, so the lighter load is systematic, not noise. One schedule for both removes it.

Run on the host: ``python bench/serving_agreement.py`` (it starts one container and removes it on every path).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "llenergymeasure/vllm:0.1.0-cpu"
PORT = 8000
FIGURES = ("output_tok_s", "ttft_p50_ms", "itl_p50_ms", "tpot_p50_ms")


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--input-len", type=int, default=32)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--open-rounds", type=int, default=5, help="open-loop rounds (0: closed loop only)")
    parser.add_argument("--open-rate", type=float, default=4.0)
    parser.add_argument("--open-n", type=int, default=64)
    parser.add_argument("--open-input-len", type=int, default=64)
    parser.add_argument("--open-output-len", type=int, default=32)


# ---------------------------------------------------------------- inside the container


def _wait_ready(proc: subprocess.Popen, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the vLLM server exited ({proc.returncode}) before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"the vLLM server was not ready in {timeout:g} s")


def _lem_round(args, vocab: int) -> dict:
    from lem_runner.contract.serving import SLOConfig
    from lem_runner.serving.client import LoadSpec, run_load
    from lem_runner.serving.figures import serving_figures
    from lem_runner.serving.schedule import PlannedRequest

    rng = random.Random(args.seed)
    plan = [PlannedRequest(i, None, [rng.randrange(10, vocab - 10) for _ in range(args.input_len)], args.output_len)
            for i in range(args.n)]
    spec = LoadSpec(f"http://127.0.0.1:{PORT}/v1", "lem", args.concurrency, None, 300.0, True, {"temperature": 0.0})
    records, _ = run_load(spec, plan)
    f = serving_figures(records, arrival="concurrency", offered_rate=None, clients=args.concurrency, slo=SLOConfig(),
                        energy_between=None, energy_reason="not measured here", baseline_w=None)
    return {"ok": f.n_ok, "output_tokens": sum(r.output_tokens for r in records if r.ok),
            "input_tokens_mean": statistics.fmean(r.input_tokens or 0 for r in records if r.ok),
            "duration_s": f.duration_s, "output_tok_s": f.output_tokens_per_s, "ttft_p50_ms": f.ttft.p50_ms,
            "itl_p50_ms": f.itl.p50_ms, "tpot_p50_ms": f.tpot.p50_ms}


def _vllm_round(args, model: str, out_dir: Path, k: int) -> dict:
    import asyncio
    import inspect

    from vllm.benchmarks import serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    serve.add_cli_args(parser)
    name = f"vllm-{k}.json"
    argv = ["--backend", "vllm", "--base-url", f"http://127.0.0.1:{PORT}", "--endpoint", "/v1/completions",
            "--model", "lem", "--tokenizer", model, "--dataset-name", "random", "--random-input-len",
            str(args.input_len), "--random-output-len", str(args.output_len), "--num-prompts", str(args.n),
            "--request-rate", "inf", "--max-concurrency", str(args.concurrency), "--ignore-eos", "--seed",
            str(args.seed), "--temperature", "0", "--percentile-metrics", "ttft,tpot,itl,e2el", "--save-result",
            "--result-dir", str(out_dir), "--result-filename", name]
    known = {a for action in parser._actions for a in action.option_strings}
    if "--temperature" not in known:  # older releases take sampling through --extra-body or not at all
        i = argv.index("--temperature")
        del argv[i:i + 2]
    ns = parser.parse_args(argv)
    ret = serve.main(ns)
    if inspect.iscoroutine(ret):
        asyncio.run(ret)
    r = json.loads((out_dir / name).read_text())
    return {"ok": r.get("completed"), "output_tokens": r.get("total_output_tokens"),
            "input_tokens_mean": (r.get("total_input_tokens") or 0) / max(1, r.get("completed") or 1),
            "duration_s": r.get("duration"), "output_tok_s": r.get("output_throughput"),
            "ttft_p50_ms": r.get("median_ttft_ms"), "itl_p50_ms": r.get("median_itl_ms"),
            "tpot_p50_ms": r.get("median_tpot_ms")}


def write_trace(args, path: Path) -> Path:
    """One Poisson schedule from lem's own generator (schedule.arrival_offsets), as a trace file in milliseconds."""
    from lem_runner.serving.schedule import arrival_offsets

    offsets = arrival_offsets("poisson", args.open_rate, 1.0, args.open_n, random.Random(args.seed))
    path.write_text("".join(json.dumps({"timestamp": round(o * 1000, 3), "input_length": args.open_input_len,
                                        "output_length": args.open_output_len}) + "\n" for o in offsets))
    return path


def trace_plan(trace: Path, model: str, vocab: int, seed: int) -> list:
    """lem's plan of the trace, as a serving run with ``arrival: trace`` builds it (token-id prompts of each length)."""
    from lem_runner.contract import ExperimentConfig
    from lem_runner.contract.workload import read_trace
    from lem_runner.serving.schedule import plan_requests

    cfg = ExperimentConfig(model=model, scenario="serving", backend="vllm", device="cpu", seed=seed,
                           max_output_tokens=max(1, max(json.loads(x)["output_length"]
                                                        for x in trace.read_text().splitlines())),
                           serving={"arrival": "trace", "trace": str(trace), "warmup_requests": 0})
    return plan_requests(cfg, [], read_trace(trace, cfg.serving.trace_time_unit), vocab)


def _lem_open(plan: list, base_url: str) -> dict:
    from lem_runner.contract.serving import SLOConfig
    from lem_runner.serving.client import LoadSpec, run_load
    from lem_runner.serving.figures import serving_figures

    spec = LoadSpec(base_url, "lem", None, None, 300.0, True, {"temperature": 0.0})
    records, _ = run_load(spec, plan)
    f = serving_figures(records, arrival="trace", offered_rate=None, clients=None, slo=SLOConfig(),
                        energy_between=None, energy_reason="not measured here", baseline_w=None)
    return {"ok": f.n_ok, "output_tokens": sum(r.output_tokens for r in records if r.ok), "duration_s": f.duration_s,
            "output_tok_s": f.output_tokens_per_s, "ttft_p50_ms": f.ttft.p50_ms, "itl_p50_ms": f.itl.p50_ms,
            "tpot_p50_ms": f.tpot.p50_ms, "lag_p50_ms": f.schedule_lag_p50_ms, "lag_p99_ms": f.schedule_lag_p99_ms}


def _vllm_request_func():
    try:  # where the request functions live moved between releases
        from vllm.benchmarks.lib import endpoint_request_func as m
    except ImportError:
        from vllm.benchmarks import endpoint_request_func as m  # type: ignore[no-redef]
    return m.RequestFuncInput, m.async_request_openai_completions


def vllm_open(plan: list, base_url: str) -> dict:
    """The plan through vLLM's own request function at the plan's offsets; its figures as vLLM computes them."""
    import asyncio

    import aiohttp
    import numpy as np

    Input, request = _vllm_request_func()

    async def drive() -> tuple[list, list, float]:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, use_dns_cache=True, keepalive_timeout=60,
                                         enable_cleanup_closed=True, force_close=False)
        async with aiohttp.ClientSession(connector=connector, trust_env=True,
                                         timeout=aiohttp.ClientTimeout(total=6 * 60 * 60)) as session:
            t0 = time.perf_counter()
            tasks, scheduled = [], []
            for p in plan:  # as vllm bench serve's get_request: sleep to the offset, then create the task
                delay = t0 + p.arrival_s - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                inp = Input(prompt=p.prompt, api_url=f"{base_url}/completions", prompt_len=len(p.prompt),
                            output_len=p.max_tokens, model="lem", ignore_eos=True, extra_body={"temperature": 0.0})
                tasks.append(asyncio.create_task(request(inp, session)))
                scheduled.append(t0 + p.arrival_s)
            outs = await asyncio.gather(*tasks)
            return outs, scheduled, time.perf_counter() - t0

    outs, scheduled, dur = asyncio.run(drive())
    ok = [o for o in outs if o.success]
    tpots = [(o.latency - o.ttft) / (o.output_tokens - 1) for o in ok if (o.output_tokens or 0) > 1]
    itls = [x for o in ok for x in o.itl]
    lag = sorted((o.start_time - s) * 1000 for o, s in zip(outs, scheduled, strict=True))
    return {"ok": len(ok), "output_tokens": sum(o.output_tokens or 0 for o in ok), "duration_s": dur,
            "output_tok_s": sum(o.output_tokens or 0 for o in ok) / dur,
            "ttft_p50_ms": float(np.median([o.ttft for o in ok])) * 1000,
            "itl_p50_ms": float(np.median(itls)) * 1000, "tpot_p50_ms": float(np.median(tpots)) * 1000,
            "lag_p50_ms": float(np.percentile(lag, 50)), "lag_p99_ms": float(np.percentile(lag, 99))}


def inside(args) -> int:
    import vllm

    model = "/lem/model"
    vocab = json.loads(Path(model, "config.json").read_text())["vocab_size"]
    log = open("/tmp/server.log", "w")
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", "lem",
            "--host", "127.0.0.1", "--port", str(PORT), "--enforce-eager", "--max-model-len", "512",
            "--no-enable-prefix-caching", "--disable-uvicorn-access-log", "--dtype", "bfloat16"]
    server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        start_s = _wait_ready(server, 600)
        _lem_round(args, vocab)  # the server's first requests (warm-up, compilation of paths), outside every round
        out_dir = Path(tempfile.mkdtemp())
        rounds = []
        for k in range(args.rounds):
            lem = _lem_round(args, vocab)
            peer = _vllm_round(args, model, out_dir, k)
            rounds.append({"lem": lem, "vllm": peer, "loadavg": os.getloadavg()})
        open_rounds = []
        if args.open_rounds:
            trace = write_trace(args, out_dir / "trace.jsonl")
            plan = trace_plan(trace, model, vocab, args.seed)
            base = f"http://127.0.0.1:{PORT}/v1"
            for k in range(args.open_rounds):  # alternate which client goes first, so a drift hits both alike
                pair = {}
                for side in (("lem", "vllm") if k % 2 == 0 else ("vllm", "lem")):
                    pair[side] = _lem_open(plan, base) if side == "lem" else vllm_open(plan, base)
                open_rounds.append({**pair, "loadavg": os.getloadavg()})
        print("AGREEMENT " + json.dumps({"vllm_version": vllm.__version__, "server_start_s": start_s,
                                         "server_argv": argv[1:], "rounds": rounds, "open_rounds": open_rounds,
                                         "open_schedule": [p.arrival_s for p in plan] if args.open_rounds else []}),
              flush=True)
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()
    return 0


# ---------------------------------------------------------------- on the host


def host(args) -> int:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_model import build_tiny_llama

    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        print(f"{IMAGE} is not built (lem images build vllm --cpu)", file=sys.stderr)
        return 2
    name = f"lem-bench-agreement-{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_llama(Path(tmp) / "tiny-llama")
        cmd = ["docker", "run", "--rm", "--name", name, "--network", "none", "--shm-size", "1g",
               "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
               "-e", "VLLM_CPU_KVCACHE_SPACE=1", "-e", "PYTHONPATH=/lem/src", "-e", "VLLM_CACHE_ROOT=/tmp/vllm",
               "-v", f"{model}:/lem/model:ro", "-v", f"{ROOT / 'runners'}:/lem/src:ro",
               "-v", f"{Path(__file__).resolve()}:/lem/agreement.py:ro", "--entrypoint", "python", IMAGE,
               "/lem/agreement.py", "--inside", "--n", str(args.n), "--input-len", str(args.input_len),
               "--output-len", str(args.output_len), "--concurrency", str(args.concurrency), "--rounds",
               str(args.rounds), "--seed", str(args.seed), "--open-rounds", str(args.open_rounds), "--open-rate",
               str(args.open_rate), "--open-n", str(args.open_n), "--open-input-len", str(args.open_input_len),
               "--open-output-len", str(args.open_output_len)]
        load_before = os.getloadavg()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3000)
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("AGREEMENT ")), None)
    if line is None:
        print(proc.stdout[-3000:], proc.stderr[-5000:], sep="\n", file=sys.stderr)
        return 1
    data = json.loads(line.removeprefix("AGREEMENT "))
    medians = paired = ratios = None  # --rounds 0: the open loop only
    if data["rounds"]:
        medians = {side: {f: statistics.median(r[side][f] for r in data["rounds"]) for f in FIGURES}
                   for side in ("lem", "vllm")}
        # each round's lem / vLLM ratio (the two ran back to back, so a slow drift of this machine's load cancels),
        # and their median: the figure compared with the target
        paired = {f: [r["lem"][f] / r["vllm"][f] for r in data["rounds"]] for f in FIGURES}
        ratios = {f: statistics.median(v) for f, v in paired.items()}
    open_loop = None
    if data.get("open_rounds"):
        rs = data["open_rounds"]
        o_med = {side: {f: statistics.median(r[side][f] for r in rs) for f in FIGURES} for side in ("lem", "vllm")}
        o_pairs = {f: [r["lem"][f] / r["vllm"][f] for r in rs] for f in FIGURES}
        o_ratios = {f: statistics.median(v) for f, v in o_pairs.items()}
        sched = data["open_schedule"]
        open_loop = {"workload": {"n": args.open_n, "input_len": args.open_input_len, "output_len": args.open_output_len,
                                  "offered_rate": args.open_rate, "rounds": args.open_rounds, "seed": args.seed,
                                  "realised_rate": (len(sched) - 1) / sched[-1] if len(sched) > 1 and sched[-1] else None,
                                  "arrival": "one Poisson draw of lem's generator, replayed by both (lem: trace)"},
                     "rounds": rs, "medians": o_med, "paired_ratios": o_pairs, "ratios_lem_over_vllm": o_ratios,
                     "meets": all(abs(o_ratios[f] - 1) <= 0.05 for f in ("ttft_p50_ms", "tpot_p50_ms", "itl_p50_ms"))}
    data.pop("open_rounds", None)
    report = {
        "image": IMAGE, "model": "tests/tiny_model.py tiny random Llama (bfloat16)",
        "workload": {"n": args.n, "input_len": args.input_len, "output_len": args.output_len,
                     "concurrency": args.concurrency, "rounds": args.rounds, "seed": args.seed,
                     "ignore_eos": True, "temperature": 0},
        **data, "medians": medians, "paired_ratios": paired, "ratios_lem_over_vllm": ratios, "target": "each ratio within 0.95..1.05",
        "meets": all(abs(r - 1) <= 0.05 for r in ratios.values()) if ratios else None,
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpus": os.cpu_count(),
        "open_loop": open_loop,
    }
    out = ROOT / "bench" / "results" / f"serving-agreement-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({"server_start_s": data["server_start_s"], "medians": medians, "ratios": ratios,
                      "meets": report["meets"], "open_loop": open_loop and {
                          k: open_loop[k] for k in ("medians", "ratios_lem_over_vllm", "meets")}}, indent=2))
    print(f"wrote {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _options(parser)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return inside(args) if args.inside else host(args)


if __name__ == "__main__":
    sys.exit(main())
