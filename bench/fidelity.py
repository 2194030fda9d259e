"""Fidelity: lem's reported tok/s against a plain generation loop on the same model, prompts and settings.

PyTorch: lem's runner (local process) vs a plain transformers ``generate`` loop. vLLM: lem's runner in the vLLM image
vs a plain ``LLM.generate`` script in the same image (bench/plain_vllm.py). The two sides alternate; the figure is the
median of per-pair lem/plain ratios (DESIGN.md target: within 3 %; issue 5's vLLM target: >= 0.97).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from lem_runner.contract import ExperimentConfig  # noqa: E402
from lem_runner.contract.config import PromptConfig  # noqa: E402
from lem_runner.prompts import load_prompts  # noqa: E402
from llenergymeasure.experiment import execute_experiment  # noqa: E402
from llenergymeasure.launchers.docker import DockerLauncher  # noqa: E402
from llenergymeasure.launchers.local import LocalLauncher  # noqa: E402

N_PROMPTS, BATCH, MAX_TOKENS = 32, 8, 32


def lem_tps(config: ExperimentConfig, launcher, out: Path) -> float:
    result, _ = execute_experiment(config, output=out, launcher=launcher)
    assert result.output_tokens == N_PROMPTS * MAX_TOKENS
    return result.output_tokens_per_second


def plain_pytorch_tps(model_dir: Path) -> float:
    """transformers generate over the same batches, no streamer, no lem; warmup batch first, like lem."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompts = load_prompts(PromptConfig(), N_PROMPTS, seed=42)
    batches = [prompts[i : i + BATCH] for i in range(0, N_PROMPTS, BATCH)]

    def run(batch):
        enc = tok(batch, return_tensors="pt", padding=True, truncation=True, max_length=512)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=MAX_TOKENS, min_new_tokens=MAX_TOKENS, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        return out.shape[0] * (out.shape[1] - enc["input_ids"].shape[1])

    run(batches[0])
    t0 = time.perf_counter()
    tokens = sum(run(b) for b in batches)
    return tokens / (time.perf_counter() - t0)


def plain_vllm_tps(client, image: str, model_dir: Path) -> float:
    logs = client.containers.run(
        image, entrypoint=["/opt/lem/bin/python", "/bench/plain_vllm.py"],
        command=["--model", "/lem/model", "--n-prompts", str(N_PROMPTS), "--max-tokens", str(MAX_TOKENS)],
        volumes={str(model_dir): {"bind": "/lem/model", "mode": "ro"},
                 str(ROOT / "bench"): {"bind": "/bench", "mode": "ro"}},
        network_mode="none", read_only=True, tmpfs={"/tmp": "rw,exec,size=4g"}, shm_size="8g",
        environment={"VLLM_CPU_KVCACHE_SPACE": "1"}, user=str(os.getuid()), remove=True,
        stdout=True, stderr=False,
    )
    line = next(x for x in reversed(logs.decode().splitlines()) if x.startswith('{"tokens"'))  # vLLM logs to stdout
    return json.loads(line)["tokens_per_second"]


def compare(name: str, lem, plain, reps: int) -> dict:
    """Alternate the two sides; the figure is the median of per-pair ratios (adjacent runs share the machine's
    drift, which a ratio of medians does not cancel)."""
    sides: dict[str, list[float]] = {"lem": [], "plain": []}
    for i in range(reps):
        order = (("lem", lem), ("plain", plain)) if i % 2 == 0 else (("plain", plain), ("lem", lem))
        for side, fn in order:
            sides[side].append(fn())
    pairs = [a / b for a, b in zip(sides["lem"], sides["plain"])]
    ratio = statistics.median(pairs)
    med = {k: statistics.median(v) for k, v in sides.items()}
    print(f"  {name:8s} lem {med['lem']:.1f} tok/s · plain {med['plain']:.1f} tok/s (medians) · "
          f"paired ratio {ratio:.3f} (pairs: {', '.join(f'{p:.3f}' for p in pairs)})")
    return {"tokens_per_second": sides, "median": med, "paired_ratios": pairs, "ratio_lem_to_plain": ratio}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--backends", default="pytorch,vllm")
    args = parser.parse_args()
    from tiny_model import build_tiny_llama

    report = {"benchmark": "fidelity", "date": datetime.now().isoformat(timespec="seconds"),
              "workload": {"n_prompts": N_PROMPTS, "batch_size": BATCH, "max_output_tokens": MAX_TOKENS}}
    print(f"fidelity ({args.reps} alternating pairs, medians; {N_PROMPTS} prompts x {MAX_TOKENS} tokens):")
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_llama(Path(tmp) / "tiny")
        base = {"model": str(model), "n_prompts": N_PROMPTS, "max_output_tokens": MAX_TOKENS,
                "force_output_length": True, "device": "cpu"}
        if "pytorch" in args.backends:
            cfg = ExperimentConfig(**base, pytorch={"batch_size": BATCH})
            report["pytorch"] = compare("pytorch", lambda: lem_tps(cfg, LocalLauncher(), Path(tmp) / "r"),
                                        lambda: plain_pytorch_tps(model), args.reps)
        if "vllm" in args.backends:
            from llenergymeasure.host.docker_engine import docker_client
            from llenergymeasure.images.build import build_image

            client = docker_client()
            image = build_image(client, "vllm", cpu=True).tag
            cfg = ExperimentConfig(**base, backend="vllm", vllm={"max_model_len": 1024, "enforce_eager": True})
            report["vllm"] = compare("vllm", lambda: lem_tps(cfg, DockerLauncher(image=image), Path(tmp) / "r"),
                                     lambda: plain_vllm_tps(client, image, model), args.reps)
    out = ROOT / "bench" / "results" / f"fidelity-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"  written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
