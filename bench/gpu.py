"""GPU benchmark (needs an NVIDIA GPU with NVML; skipped elsewhere): what the NVML path measures and what it costs.

1. Counter update period, measured by polling the counter (idle and busy).
2. Idle baseline: mean power and its spread over 5 s.
3. Counter vs integrated sampled power on >= 10 s windows: a full lem measurement of a ~1.1B random-weight Llama
   (synthetic weights, bf16), repeated; its prefill/decode energy split is reported too.
4. Measured vs unmeasured throughput: the same batches through the same loaded model, alternately with lem's energy
   tracking (counter reads, first-token marks, 10 Hz sampler thread) and with none; the median of per-pair ratios.
5. A short clock sweep: the same 1.1B model with the SM clock locked (by the controller's gpustate, restored after
   each) at three supported clocks, reporting J/token, tok/s and the SM clock observed in the window per clock.
   Needs root; where NVML refuses, it prints exactly what NVML answered. ``--clock-sweep-only`` runs just this.

Writes bench/results/gpu-<date>.json and prints each figure against its target.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from lem_runner.backends.pytorch.backend import PyTorchBackend  # noqa: E402
from lem_runner.contract import ExperimentConfig, RunRequest  # noqa: E402
from lem_runner.energy import NvmlEnergySource, select_energy_source  # noqa: E402
from lem_runner.measure import run_measurement  # noqa: E402
from lem_runner.measurement.environment import collect_environment  # noqa: E402
from lem_runner.prompts import load_prompts  # noqa: E402
from provenance import provenance  # noqa: E402

#: a TinyLlama-1.1B-shaped decoder; weights are random (synthetic_weights), so nothing is downloaded
LLAMA_1B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
            "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
            "vocab_size": 32000, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
            "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2, "dtype": "bfloat16"}


def synthetic_model_dir(root: Path) -> Path:
    """The tiny model's tokenizer with a 1.1B Llama config.json beside it."""
    from tiny_model import build_tiny_llama

    path = build_tiny_llama(root / "llama-1b")
    for f in path.glob("*.safetensors"):
        f.unlink()
    (path / "config.json").write_text(json.dumps(LLAMA_1B), encoding="utf-8")
    return path


def config_for(model: Path, n_prompts: int, batch: int, out_tokens: int, **extra) -> ExperimentConfig:
    return ExperimentConfig.model_validate({
        "model": str(model), "device": "cuda", "dtype": "bfloat16", "synthetic_weights": True,
        "n_prompts": n_prompts, "max_output_tokens": out_tokens, "force_output_length": True,
        "prompts": {"source": "synthetic", "input_tokens": 128}, "max_input_tokens": 128,
        "pytorch": {"batch_size": batch}, "energy": {"sampler": "nvml"}, **extra,
    })


def full_measurements(cfg: ExperimentConfig, reps: int, out: Path, gpu_settings=()) -> list[dict]:
    rows = []
    for i in range(reps):
        request = RunRequest(experiment_id=f"gpu-bench-{i}", config=cfg, model_path=cfg.model,
                             gpu_settings=list(gpu_settings))
        backend = PyTorchBackend(cfg, cfg.model)
        try:
            r = run_measurement(
                request, backend, lambda loaded: select_energy_source(cfg, loaded.device_kind),
                lambda loaded: collect_environment(loaded.libraries, cfg.devices, True, loaded.cuda_version, None),
                emit=lambda e: None, out_dir=out / f"run-{i}",
            )
        finally:
            backend.close()
        e = r.energy
        rows.append({
            "window_s": r.inference_time_s, "tokens_per_second": r.output_tokens_per_second,
            "counter_j": r.total_energy_j, "integrated_j": e.integrated_energy_j,
            "counter_vs_integrated_rel_diff": e.counter_vs_integrated_rel_diff,
            "n_power_samples": e.n_power_samples, "update_period_ms": e.counter_update_period_ms,
            "baseline_w": e.baseline.power_w if e.baseline else None,
            "baseline_std_w": e.baseline.power_std_w if e.baseline else None,
            "baseline_source": e.baseline.source if e.baseline else None,
            "adjusted_j": r.adjusted_energy_j, "j_per_token": r.energy_per_token_j,
            "adjusted_j_per_token": r.adjusted_energy_per_token_j,
            "prefill_j": r.phases.prefill.energy_j, "decode_j": r.phases.decode.energy_j,
            "prefill_share": r.phases.prefill.energy_share, "prefill_time_s": r.phases.prefill.time_s,
            "decode_time_s": r.phases.decode.time_s, "steady_state_tps":
                r.windows["steady_state"].tokens_per_second if "steady_state" in r.windows else None,
            "achieved_tflops": (r.flops.achieved_flops_per_s or 0) / 1e12, "quality_flags": r.quality_flags,
            "sampler_cpu_s": e.sampler_cpu_s, "gpu": r.environment.gpus[0].model_dump() if r.environment.gpus else None,
            "driver": r.environment.driver_version, "cuda_driver": r.environment.cuda_driver_version,
            "power_source": e.method,
            "operating_point": {d: {"sm_median_mhz": o.sm_clock_median_mhz, "sm_min_mhz": o.sm_clock_min_mhz,
                                    "sm_max_mhz": o.sm_clock_max_mhz, "power_limit_w": o.power_limit_max_w}
                                for d, o in r.operating_point.observed.items()} if r.operating_point else None,
        })
        print(f"  run {i}: {rows[-1]['window_s']:.1f} s window, counter {rows[-1]['counter_j']:.1f} J, integrated "
              f"{rows[-1]['integrated_j']:.1f} J ({rows[-1]['counter_vs_integrated_rel_diff']:+.2%}), prefill share "
              f"{rows[-1]['prefill_share']:.1%}, flags {rows[-1]['quality_flags']}", flush=True)
    return rows


def sweep_clocks(n: int = 3) -> list[int]:
    """``n`` supported SM clocks spread over the upper two thirds of the range (the lowest clocks take too long)."""
    from llenergymeasure.gpustate import open_nvml

    dev = open_nvml("0")
    top_mem = max(dev.supported_memory_clocks_mhz())
    clocks = sorted(set(dev.supported_sm_clocks_mhz(top_mem)))
    lo, hi = clocks[len(clocks) // 3], clocks[-1]
    wanted = [lo + (hi - lo) * k / (n - 1) for k in range(n)]
    return sorted({min(clocks, key=lambda c: abs(c - w)) for w in wanted})


def clock_sweep(model: Path, out: Path) -> dict:
    """J/token and tok/s at three locked SM clocks (one full lem measurement each, restored after each)."""
    from lem_runner.contract import GpuConfig
    from llenergymeasure.errors import LemError
    from llenergymeasure.gpustate import operating_point

    rows = []
    try:
        clocks = sweep_clocks()
    except Exception as exc:  # report what NVML said, do not hide it
        return {"error": f"{type(exc).__name__}: {exc}"}
    for clock in clocks:
        gpu = GpuConfig(locked_sm_clock_mhz=clock)
        cfg = config_for(model, n_prompts=64, batch=32, out_tokens=128, gpu=gpu.model_dump())
        try:
            with operating_point(gpu, ["0"]) as settings:
                (run,) = full_measurements(cfg, 1, out / f"clock-{clock}", settings)
        except LemError as exc:
            return {"clocks": clocks, "rows": rows, "error": str(exc)}
        observed = run.pop("operating_point", None)
        rows.append({"sm_clock_mhz": clock, "j_per_token": run["j_per_token"],
                     "tokens_per_second": run["tokens_per_second"], "observed": observed,
                     "quality_flags": run["quality_flags"]})
        print(f"  SM {clock} MHz: {run['j_per_token']:.4f} J/token, {run['tokens_per_second']:.0f} tok/s, "
              f"observed {observed}, flags {run['quality_flags']}", flush=True)
    return {"clocks": clocks, "rows": rows}


def overhead_pairs(cfg: ExperimentConfig, pairs: int) -> list[dict]:
    """Same loaded model, same batches: with lem's energy tracking vs none, alternating (order swapped each pair)."""
    backend = PyTorchBackend(cfg, cfg.model)
    backend.load()
    prompts = load_prompts(cfg.prompts, cfg.n_prompts, cfg.seed)
    batches = [prompts[i : i + cfg.pytorch.batch_size] for i in range(0, len(prompts), cfg.pytorch.batch_size)]
    backend.generate(batches[0])  # warm up

    def run(measured: bool) -> float:
        energy = NvmlEnergySource(cfg.devices, sample_hz=10.0) if measured else None
        if energy is not None:
            assert energy.is_available(), energy.unavailable_reason
            energy.start_tracking()
        t0 = time.perf_counter()
        tokens = 0
        for batch in batches:
            tokens += sum(r.output_tokens for r in backend.generate(batch))
        elapsed = time.perf_counter() - t0
        if energy is not None:
            energy.stop_tracking()
        return tokens / elapsed

    out = []
    for i in range(pairs):
        order = (True, False) if i % 2 == 0 else (False, True)
        tps = {m: run(m) for m in order}
        out.append({"measured_tps": tps[True], "unmeasured_tps": tps[False], "ratio": tps[True] / tps[False]})
        print(f"  pair {i}: measured {tps[True]:.0f} tok/s, unmeasured {tps[False]:.0f} tok/s, "
              f"ratio {out[-1]['ratio']:.4f}", flush=True)
    backend.close()
    return out


def kernel_pairs(pairs: int, n_matmuls: int = 400) -> list[dict]:
    """A GPU-bound kernel stream (bf16 8192x8192 matmuls, no Python work between launches worth mentioning), timed
    with lem's tracking (10 Hz sampler) and without, alternating: does sampling NVML disturb the GPU itself?"""
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    out = torch.empty_like(a)

    def run(measured: bool) -> float:
        energy = NvmlEnergySource([0], sample_hz=10.0) if measured else None
        if energy is not None:
            assert energy.is_available(), energy.unavailable_reason
            energy.start_tracking()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n_matmuls):
            torch.matmul(a, a, out=out)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        if energy is not None:
            energy.stop_tracking()
        return n_matmuls / elapsed

    run(False)
    results = []
    for i in range(pairs):
        order = (True, False) if i % 2 == 0 else (False, True)
        rate = {m: run(m) for m in order}
        results.append({"measured_per_s": rate[True], "unmeasured_per_s": rate[False],
                        "ratio": rate[True] / rate[False]})
    return results


def nvml_call_costs(n: int = 100) -> dict:
    """Median and max wall time of each NVML query the sampler makes, in microseconds."""
    import pynvml

    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    calls = {
        "energy_counter": lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(h),
        "power_averaged": lambda: pynvml.nvmlDeviceGetPowerUsage(h),
        "power_instant": lambda: pynvml.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_POWER_INSTANT]),
        "temperature": lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
        "sm_clock": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
        "memory": lambda: pynvml.nvmlDeviceGetMemoryInfo(h),
        "utilization": lambda: pynvml.nvmlDeviceGetUtilizationRates(h),
        "clock_event_reasons": lambda: pynvml.nvmlDeviceGetCurrentClocksEventReasons(h),
    }
    out = {}
    for name, fn in calls.items():
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = {"median_us": statistics.median(times) * 1e6, "max_us": max(times) * 1e6}
    return out


def idle_and_busy_period() -> dict:
    import torch

    nvml = NvmlEnergySource([0])
    assert nvml.is_available(), nvml.unavailable_reason
    nvml.probe()
    idle = nvml.update_period_s
    baseline = nvml.idle_baseline(5.0)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    busy_nvml = NvmlEnergySource([0])
    busy_nvml.is_available()
    power_source = busy_nvml.devices[0].power_source
    import threading

    stop = threading.Event()

    def load():
        x = a
        while not stop.is_set():
            x = (x @ a) / 8192
        torch.cuda.synchronize()

    t = threading.Thread(target=load)
    t.start()
    time.sleep(1.0)
    busy_nvml.probe()
    busy_nvml.start_tracking()
    time.sleep(12.0)
    reading = busy_nvml.stop_tracking()
    stop.set()
    t.join()
    from lem_runner.energy.tracker import integrate_power

    integrated = integrate_power(reading.samples, "0", reading.t_start, reading.t_end)
    return {
        "update_period_idle_ms": idle * 1000 if idle else None,
        "update_period_busy_ms": busy_nvml.update_period_s * 1000 if busy_nvml.update_period_s else None,
        "baseline_w": baseline.power_w if baseline else None,
        "baseline_std_w": baseline.power_std_w if baseline else None,
        "matmul_window_s": reading.duration_s, "matmul_counter_j": reading.total_j, "matmul_integrated_j": integrated,
        "matmul_rel_diff": (integrated - reading.total_j) / reading.total_j if integrated else None,
        "matmul_mean_power_w": reading.total_j / reading.duration_s,
        "sampler_cpu_fraction": (reading.sampler_cpu_s or 0) / reading.duration_s,
        "power_source": power_source,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2, help="full lem measurements (>= 10 s windows)")
    parser.add_argument("--pairs", type=int, default=12, help="measured/unmeasured pairs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--kernel-only", action="store_true", help="only the GPU-bound kernel-stream comparison")
    parser.add_argument("--clock-sweep-only", action="store_true", help="only the three-clock SM sweep (needs root)")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("gpu bench: torch is not installed; skipped")
        return 0
    if not torch.cuda.is_available() or not NvmlEnergySource([0]).is_available():
        print("gpu bench: no NVIDIA GPU with a readable NVML energy counter here; skipped")
        return 0
    if args.clock_sweep_only:
        with tempfile.TemporaryDirectory() as tmp:
            print("clock sweep (SM clock locked, 1.1B random-weight Llama, batch 32, 128 out tokens):", flush=True)
            sweep = clock_sweep(synthetic_model_dir(Path(tmp)), Path(tmp))
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"gpu-clocks-{datetime.now():%Y%m%d-%H%M%S}.json"
        path.write_text(json.dumps({"date": datetime.now().isoformat(timespec="seconds"), "provenance": provenance(),
                                    "gpu": torch.cuda.get_device_name(0), "clock_sweep": sweep}, indent=2))
        print(f"clock sweep: {sweep.get('error') or 'done'}; wrote {path}")
        return 0
    print("kernel stream (bf16 matmuls) with and without tracking:", flush=True)
    kernels = kernel_pairs(10)
    kernel_ratio = statistics.median(k["ratio"] for k in kernels)
    print(f"  ratios {[round(k['ratio'], 4) for k in kernels]} -> median {kernel_ratio:.4f}", flush=True)
    if args.kernel_only:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"gpu-kernel-{datetime.now():%Y%m%d-%H%M%S}.json"
        path.write_text(json.dumps({"date": datetime.now().isoformat(timespec="seconds"), "provenance": provenance(),
                                    "gpu": torch.cuda.get_device_name(0), "kernel_pairs": kernels,
                                    "kernel_measured_vs_unmeasured_median_ratio": kernel_ratio}, indent=2))
        print(f"wrote {path}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        model = synthetic_model_dir(Path(tmp))
        print("counter update period, idle baseline, 12 s matmul window:", flush=True)
        probe = idle_and_busy_period()
        probe["nvml_call_us"] = nvml_call_costs()
        print(f"  {probe}", flush=True)
        cfg = config_for(model, n_prompts=128, batch=32, out_tokens=128)
        print("full lem measurements of a 1.1B random-weight Llama:", flush=True)
        runs = full_measurements(cfg.model_copy(update={"energy": cfg.energy.model_copy(
            update={"baseline": cfg.energy.baseline.model_copy(update={"mode": "fresh"})})}), args.reps, Path(tmp))
        print("measured vs unmeasured throughput:", flush=True)
        pairs = overhead_pairs(config_for(model, n_prompts=64, batch=64, out_tokens=128), args.pairs)
        print("clock sweep (SM clock locked at three clocks):", flush=True)
        sweep = clock_sweep(model, Path(tmp))
    ratio = statistics.median(p["ratio"] for p in pairs)
    worst = max(abs(r["counter_vs_integrated_rel_diff"]) for r in runs)
    sampler_cpu = max(r["sampler_cpu_s"] / r["window_s"] for r in runs)
    summary = {
        "date": datetime.now().isoformat(timespec="seconds"), "provenance": provenance(), "gpu": torch.cuda.get_device_name(0),
        "model": "Llama 1.1B shape (TinyLlama), synthetic random weights, bf16, batch 32, 128 in / 128 out tokens",
        "probe": probe, "runs": runs, "pairs": pairs, "kernel_pairs": kernels, "clock_sweep": sweep,
        "kernel_measured_vs_unmeasured_median_ratio": kernel_ratio,
        "measured_vs_unmeasured_median_ratio": ratio, "counter_vs_integrated_worst_abs": worst,
        "sampler_cpu_fraction_of_a_core": sampler_cpu,
        "targets": {"measured_vs_unmeasured": ">= 0.99", "counter_vs_integrated": "<= 5 %",
                    "sampler_cpu": "<= 1 % of a core at 10 Hz"},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"measured/unmeasured throughput {ratio:.4f} (target >= 0.99): {'meets' if ratio >= 0.99 else 'falls short'}")
    print(f"counter vs integrated, worst |diff| {worst:.2%} (target <= 5 %): {'meets' if worst <= 0.05 else 'falls short'}")
    print(f"sampler thread CPU {sampler_cpu:.2%} of a core at 10 Hz (target <= 1 %): "
          f"{'meets' if sampler_cpu <= 0.01 else 'falls short'}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
