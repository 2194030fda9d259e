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
        print("AGREEMENT " + json.dumps({"vllm_version": vllm.__version__, "server_start_s": start_s,
                                         "server_argv": argv[1:], "rounds": rounds}), flush=True)
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
               str(args.rounds), "--seed", str(args.seed)]
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
    medians = {side: {f: statistics.median(r[side][f] for r in data["rounds"]) for f in FIGURES}
               for side in ("lem", "vllm")}
    # each round's lem / vLLM ratio (the two ran back to back, so a slow drift of this machine's load cancels), and
    # their median: the figure compared with the target
    paired = {f: [r["lem"][f] / r["vllm"][f] for r in data["rounds"]] for f in FIGURES}
    ratios = {f: statistics.median(v) for f, v in paired.items()}
    report = {
        "image": IMAGE, "model": "tests/tiny_model.py tiny random Llama (bfloat16)",
        "workload": {"n": args.n, "input_len": args.input_len, "output_len": args.output_len,
                     "concurrency": args.concurrency, "rounds": args.rounds, "seed": args.seed,
                     "ignore_eos": True, "temperature": 0},
        **data, "medians": medians, "paired_ratios": paired, "ratios_lem_over_vllm": ratios, "target": "each ratio within 0.95..1.05",
        "meets": all(abs(r - 1) <= 0.05 for r in ratios.values()),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpus": os.cpu_count(),
    }
    out = ROOT / "bench" / "results" / f"serving-agreement-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({"server_start_s": data["server_start_s"], "medians": medians, "ratios": ratios,
                      "meets": report["meets"]}, indent=2))
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
