"""The GPU acceptance check for a lent GPU machine (``make gpu-check``; one H100, about 8 minutes).

Runs, each step capped so the whole stays within ``--budget-s``:

1. every gpu-marked test (``pytest -m gpu tests/gpu``), each test's outcome recorded;
2. ``bench/gpu.py``: counter vs integrated power, counter update period, idle baseline, sampler overhead, measured
   vs unmeasured throughput, the kernel stream with and without sampling, and its SM clock sweep;
3. a power-limit sweep through the real ``lem run`` (a study over ``gpu.power_limit_w``): each point's applied and
   observed power limit, J/token and tok/s, and the GPU's power limit after the study (restored or not);
4. vLLM offline and serving on the GPU through ``lem run``, when vLLM imports (or installs from a carried wheel,
   ``LEM_VLLM_WHEELS``); otherwise the step is skipped and says why.

Every figure is written under ``$OUT`` (else ``bench/results``) in the files bench/report.py reads: ``gpu-*.json``
(bench/gpu.py), ``gpu-sweep-*.json``, ``gpu-vllm-*.json`` and ``gpu-check-*.json`` (the steps, the tests, the code's
provenance). Copy them into bench/results/ and run ``python bench/report.py`` to regenerate BENCHMARKS.md's GPU rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from provenance import provenance  # noqa: E402

#: each step's cap in seconds (each also gets no more than what is left of the budget)
CAPS = {"tests": 210, "bench": 200, "power_sweep": 120, "vllm": 100}


def _env() -> dict:
    paths = [str(ROOT / "controller"), str(ROOT / "runners"), str(ROOT / "tests")]
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths + ([old] if old else [])), "PYTHONUNBUFFERED": "1"}


def _run(cmd: list[str], cap: float, log, cwd: Path = ROOT, env: dict | None = None) -> dict:
    """Run ``cmd`` with its output in the log; kill it at ``cap`` seconds."""
    log.write(f"\n$ {' '.join(cmd)}   (cap {cap:.0f} s)\n")
    log.flush()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env or _env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        rc = proc.wait(timeout=cap)
        capped = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        rc, capped = proc.returncode, True
    return {"cmd": " ".join(cmd), "returncode": rc, "seconds": round(time.monotonic() - t0, 1), "capped": capped}


def _junit(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = f"skipped: {child.get('message', '')}"[:300]
        out.append({"test": f"{case.get('classname')}::{case.get('name')}", "seconds": float(case.get("time", 0)),
                    "outcome": outcome})
    return out


def step_tests(cap: float, log, tmp: Path) -> dict:
    junit = tmp / "gpu-tests.xml"
    r = _run([sys.executable, "-m", "pytest", "-m", "gpu", "tests/gpu", "-q", "-p", "no:cacheprovider", "-rs",
              f"--junitxml={junit}"], cap, log)
    r["tests"] = _junit(junit)
    return r


def step_bench(cap: float, log, out: Path) -> dict:
    before = set(out.glob("gpu-2*.json"))
    r = _run([sys.executable, "bench/gpu.py", "--out", str(out), "--pairs", "8"], cap, log)
    r["files"] = sorted(p.name for p in set(out.glob("gpu-2*.json")) - before)
    return r


def _nvml_power_limit_w() -> tuple[float | None, tuple[float, float] | None]:
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        lo, hi = pynvml.nvmlDeviceGetPowerManagementLimitConstraints(h)
        return pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000.0, (lo / 1000.0, hi / 1000.0)
    except Exception as exc:  # reported, never hidden
        print(f"gpu-check: NVML power limit not readable: {exc}", file=sys.stderr)
        return None, None


def _model(tmp: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from gpu import synthetic_model_dir  # bench/gpu.py: the 1.1B Llama shape with random weights

    return synthetic_model_dir(tmp)


def power_sweep_study(model: Path, points: list[int]) -> dict:
    """The study the power-limit step runs: the 1.1B synthetic Llama, one point per power limit."""
    return {
        "name": "gpu-power-sweep",
        "base": {"model": str(model), "device": "cuda", "dtype": "bfloat16", "synthetic_weights": True,
                 "n_prompts": 64, "max_output_tokens": 128, "force_output_length": True, "max_input_tokens": 128,
                 "prompts": {"source": "synthetic", "input_tokens": 128}, "pytorch": {"batch_size": 32},
                 "energy": {"sampler": "nvml"}, "runner": "local"},
        "sweep": {"gpu.power_limit_w": points},
    }


def sweep_points(lo: float, hi: float) -> list[int]:
    """Half the maximum (or the minimum, if higher) and the maximum: a limit that binds under load and one that does
    not."""
    return sorted({round(max(lo, hi * 0.5)), round(hi)})


def sweep_rows(results: list[dict]) -> list[dict]:
    """Each point's configured, applied (read back) and observed power limit, with its J/token and tok/s."""
    rows = []
    for res in results:
        op = res.get("operating_point") or {}
        rows.append({"power_limit_w": ((res.get("config") or {}).get("gpu") or {}).get("power_limit_w"),
                     "applied_w": [s.get("applied_power_limit_w") for s in op.get("settings", [])],
                     "observed_max_w": [o.get("power_limit_max_w") for o in op.get("observed", {}).values()],
                     "j_per_token": res.get("energy_per_token_j"),
                     "tokens_per_second": res.get("output_tokens_per_second"),
                     "quality_flags": res.get("quality_flags")})
    return rows


def step_power_sweep(cap: float, log, out: Path, tmp: Path, stamp: str) -> dict:
    before, limits = _nvml_power_limit_w()
    if before is None or limits is None:
        return {"skipped": "NVML power limit not readable"}
    points = sweep_points(*limits)
    study = tmp / "power-sweep.yaml"
    study.write_text(json.dumps(power_sweep_study(_model(tmp), points)))  # JSON is YAML
    r = _run([sys.executable, "-m", "llenergymeasure", "run", str(study), "-o", str(tmp / "sweep")], cap, log)
    results = [json.loads(p.read_text()) for p in sorted((tmp / "sweep").rglob("result.json"))]
    after = _nvml_power_limit_w()[0]
    r.update({"points_w": points, "power_limit_before_w": before, "power_limit_after_w": after,
              "restored": after == before, "rows": sweep_rows(results)})
    path = out / f"gpu-sweep-{stamp}.json"
    path.write_text(json.dumps({"date": datetime.now().isoformat(timespec="seconds"), "provenance": provenance(),
                                "power_sweep": r}, indent=2))
    r["file"] = path.name
    return r


def _vllm_importable(env: dict) -> str | None:
    """None when vLLM imports under ``env``, else why not (its last line of error)."""
    got = subprocess.run([sys.executable, "-c", "import vllm; print(vllm.__version__)"], env=env, capture_output=True,
                         text=True, timeout=120)
    return None if got.returncode == 0 else (got.stderr.strip().splitlines() or ["import failed"])[-1]


def vllm_configs(model: Path) -> dict[str, dict]:
    """The vLLM step's two runs on the tiny model: offline, and serving under a Poisson load."""
    base = {"model": str(model), "backend": "vllm", "device": "cuda", "max_output_tokens": 64,
            "force_output_length": True, "runner": "local", "energy": {"sampler": "nvml"},
            "vllm": {"max_model_len": 1024, "gpu_memory_utilization": 0.3}}
    return {"offline": {**base, "name": "gpu-vllm-offline", "n_prompts": 64},
            "serving": {**base, "name": "gpu-vllm-serving", "scenario": "serving",
                        "serving": {"arrival": "poisson", "rate": 8, "n_requests": 64,
                                    "input_tokens": {"dist": "uniform", "min": 16, "max": 128}}}}


def step_vllm(cap: float, log, out: Path, tmp: Path, stamp: str) -> dict:
    env = _env()
    why = _vllm_importable(env)
    if why is not None:
        wheels = Path(os.environ.get("LEM_VLLM_WHEELS", ROOT / ".whl"))
        found = sorted(wheels.glob("vllm-*.whl")) if wheels.is_dir() else []
        if not found:
            return {"skipped": f"vLLM is not installed here ({why}) and no vllm-*.whl was carried in {wheels} "
                               "(a vLLM wheel and its CUDA dependencies exceed what a lent machine is sent)"}
        target = tmp / "vllm-site"
        inst = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels),
                               "--target", str(target), str(found[-1])], capture_output=True, text=True)
        env["PYTHONPATH"] = f"{target}{os.pathsep}{env['PYTHONPATH']}"
        why = _vllm_importable(env) if inst.returncode == 0 else (inst.stderr.strip().splitlines() or ["?"])[-1]
        if why is not None:
            return {"skipped": f"vLLM from the carried wheel {found[-1].name} does not install or import: {why}"}
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_model import build_tiny_llama

    model = build_tiny_llama(tmp / "tiny")
    r: dict = {"runs": {}}
    for name, cfg in vllm_configs(model).items():
        path = tmp / f"vllm-{name}.yaml"
        path.write_text(json.dumps(cfg))
        run = _run([sys.executable, "-m", "llenergymeasure", "run", str(path), "-o", str(tmp / f"vllm-{name}")],
                   cap / 2, log, env=env)
        results = sorted((tmp / f"vllm-{name}").rglob("result.json"))
        if results:
            res = json.loads(results[-1].read_text())
            serving = res.get("serving") or {}
            run.update({"j_per_token": res.get("energy_per_token_j"), "total_energy_j": res.get("total_energy_j"),
                        "tokens_per_second": res.get("output_tokens_per_second"),
                        "energy_source": (res.get("energy") or {}).get("source"),
                        "ttft_p50_ms": (serving.get("ttft") or {}).get("p50_ms"),
                        "quality_flags": res.get("quality_flags")})
        r["runs"][name] = run
    path = out / f"gpu-vllm-{stamp}.json"
    path.write_text(json.dumps({"date": datetime.now().isoformat(timespec="seconds"), "provenance": provenance(),
                                "vllm": r}, indent=2))
    r["file"] = path.name
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else
                    ROOT / "bench" / "results")
    ap.add_argument("--budget-s", type=float, default=470.0, help="the whole check's wall-clock cap")
    ap.add_argument("--skip", action="append", default=[], choices=sorted(CAPS), help="leave a step out")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    deadline = time.monotonic() + args.budget_s
    summary: dict = {"date": datetime.now().isoformat(timespec="seconds"), "provenance": provenance(), "steps": {}}
    try:
        import torch

        summary["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        summary["torch"] = torch.__version__
    except ImportError:
        summary["gpu"] = None
    if not summary["gpu"]:
        print("gpu-check: no CUDA GPU visible to torch here; nothing to check")
        return 1
    with open(args.out / "gpu-check.log", "w") as log, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        steps = {"tests": lambda cap: step_tests(cap, log, tmp),
                 "bench": lambda cap: step_bench(cap, log, args.out),
                 "power_sweep": lambda cap: step_power_sweep(cap, log, args.out, tmp, stamp),
                 "vllm": lambda cap: step_vllm(cap, log, args.out, tmp, stamp)}
        for name, fn in steps.items():
            left = deadline - time.monotonic()
            if name in args.skip:
                summary["steps"][name] = {"skipped": "--skip"}
            elif left < 20:
                summary["steps"][name] = {"skipped": f"the {args.budget_s:.0f} s budget was spent"}
            else:
                print(f"gpu-check: {name} (cap {min(CAPS[name], left):.0f} s)", flush=True)
                try:
                    summary["steps"][name] = fn(min(CAPS[name], left))
                except Exception as exc:  # one broken step must not lose the others' figures
                    summary["steps"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            s = summary["steps"][name]
            print(f"gpu-check: {name}: " + (s.get("skipped") or s.get("error") or
                                              f"rc {s.get('returncode')} in {s.get('seconds')} s"
                                              + (" (capped)" if s.get("capped") else "")), flush=True)
    path = args.out / f"gpu-check-{stamp}.json"
    path.write_text(json.dumps(summary, indent=2))
    tests = summary["steps"].get("tests", {}).get("tests", [])
    failed = [t["test"] for t in tests if t["outcome"] == "failed"]
    print(f"gpu-check: {len(tests)} gpu tests, {len(failed)} failed; wrote {path}")
    ok = all(s.get("returncode", 0) == 0 and not s.get("error") for s in summary["steps"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
