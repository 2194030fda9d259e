"""Regenerate BENCHMARKS.md from the newest result of each benchmark in bench/results/ (never edited by hand)."""

from __future__ import annotations

import json
from pathlib import Path

from provenance import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _latest(prefix: str, pattern: str = "-*.json") -> tuple[Path, dict] | None:
    files = sorted(RESULTS.glob(f"{prefix}{pattern}"))
    return (files[-1], json.loads(files[-1].read_text())) if files else None


def _newest_with(prefix: str, key: str) -> tuple[Path, dict] | None:
    """The newest result of ``prefix`` that holds ``key`` (a fidelity run may cover one backend only)."""
    for path in sorted(RESULTS.glob(f"{prefix}-*.json"), reverse=True):
        data = json.loads(path.read_text())
        if key in data:
            return path, data
    return None


def _verdict(ok: bool) -> str:
    return "meets" if ok else "falls short"


def _target(target: list) -> str:
    lo, hi = target
    return f"{lo}–{hi}" if lo is not None and hi is not None else f"≥ {lo}" if lo is not None else f"≤ {hi}"
def _serving_rows() -> list[str]:
    """Load-generator accuracy (every bench/serving.py run, newest last: the lag depends on the machine's load at
    that moment, so all runs are shown with it) and the agreement with `vllm bench serve`."""
    rows = []
    runs = sorted(RESULTS.glob("serving-2*.json"))
    for path in runs[-5:]:
        r = json.loads(path.read_text())
        if "machine_cpu_busy" not in r:  # a run of the generator before its lag fixes: no load context
            continue
        cmd = f"`python bench/serving.py --rate {r['rate']:g} --n {r['n']}`"
        context = (f"machine CPU busy {r['machine_cpu_busy']:.0%}, load {r['loadavg_before'][0]:.1f} on "
                   f"{r['cpus']} cores, bare-sleep floor p99 {r['floor_lag_p99_ms']:.2f} ms")
        stub = "stub under SCHED_BATCH" if r.get("stub_sched_batch", True) else "stub at normal priority"
        rows.append(f"| serving load generator: inter-arrival fit, Poisson {r['rate']:g} req/s | {cmd} | KS p "
                    f"{r['ks_pvalue_client']:.3g} of the generator's submit times ({r['ks_pvalue']:.3g} at the "
                    f"server's clock, {stub}), {r['n']} arrivals | p > 0.01 | "
                    f"{_verdict(r['ks_pvalue_client'] > 0.01)} | `{path.relative_to(ROOT)}` |")
        rows.append(f"| serving load generator: achieved rate | {cmd} | {r['achieved_vs_scheduled']:.4f} of the "
                    f"schedule's rate ({r['achieved_rate_rps']:.1f} req/s) | within 2 % | "
                    f"{_verdict(abs(r['achieved_vs_scheduled'] - 1) <= 0.02)} | `{path.relative_to(ROOT)}` |")
        rows.append(f"| serving load generator: scheduling lag | {cmd} | p50 {r['lag_p50_ms']:.2f} ms, p99 "
                    f"{r['lag_p99_ms']:.2f} ms ({context}) | p99 ≤ 1 ms | {_verdict(r['lag_p99_ms'] <= 1.0)} | "
                    f"`{path.relative_to(ROOT)}` |")
    agree = _latest("serving-agreement")
    if agree:
        path, a = agree
        w = a["workload"]
        names = {"output_tok_s": "output tok/s", "ttft_p50_ms": "TTFT p50", "itl_p50_ms": "ITL p50",
                 "tpot_p50_ms": "TPOT p50"}
        how = (f"median of {w['rounds']} back-to-back pairs' ratios" if "paired_ratios" in a else
               f"ratio of the medians of {w['rounds']} interleaved rounds")
        loads = [r["loadavg"][0] for r in a["rounds"]]
        how += f", load {min(loads):.0f}–{max(loads):.0f} on {a.get('cpus', '?')} cores"
        for key, ratio in a["ratios_lem_over_vllm"].items():
            lem, peer = a["medians"]["lem"][key], a["medians"]["vllm"][key]
            spread = (f", pairs {min(a['paired_ratios'][key]):.2f}–{max(a['paired_ratios'][key]):.2f}, ratio of the "
                      f"medians {lem / peer:.3f}" if "paired_ratios" in a else "")
            pairs = a.get("paired_ratios", {}).get(key, [])
            noisy = bool(pairs) and max(pairs) / min(pairs) > 1.25  # the pairs disagree more than the target resolves
            verdict = ("meets" if abs(ratio - 1) <= 0.05 else
                       "inconclusive (pairs' spread ≫ 5 %)" if noisy else "falls short")
            rows.append(f"| serving: lem vs `vllm bench serve`, {names[key]} | `python bench/serving_agreement.py` | "
                        f"{ratio:.3f} ({how}{spread}; medians lem {lem:.4g}, vLLM {peer:.4g}; "
                        f"{w['n']} requests {w['input_len']}→{w['output_len']} tokens, {w['concurrency']} clients) | "
                        f"within 5 % | {verdict} | `{path.relative_to(ROOT)}` |")
        rows.append(f"| serving: vLLM CPU server start-up | `python bench/serving_agreement.py` | "
                    f"{a['server_start_s']:.1f} s launch to a healthy /health (vLLM {a['vllm_version']}, tiny model) | "
                    f"(measured) | — | `{path.relative_to(ROOT)}` |")
    return rows


def _clock_sweep_rows(gpu) -> list[str]:
    """bench/gpu.py's SM clock sweep: its own file (--clock-sweep-only) or the full run's, whichever is newer."""
    found = [x for x in (_latest("gpu-clocks"), gpu) if x and x[1].get("clock_sweep")]
    if not found:
        return []
    path, g = max(found, key=lambda x: x[0].name.replace("gpu-clocks-", "gpu-"))
    sweep = g["clock_sweep"]
    rows = []
    for row in sweep.get("rows", []):
        observed = row.get("observed") or {}
        seen = ", ".join(f"{o.get('sm_median_mhz')} MHz" for o in observed.values()) if observed else "not observed"
        rows.append(f"| GPU: SM clock locked at {row['sm_clock_mhz']} MHz | `python bench/gpu.py --clock-sweep-only` | "
                    f"{row['j_per_token']:.4f} J/token, {row['tokens_per_second']:.0f} tok/s (SM clock seen in the "
                    f"window: {seen}; flags {', '.join(row['quality_flags']) or 'none'}) | (measured) | — | "
                    f"{_gpu_file(path, g)} |")
    if sweep.get("error"):
        rows.append(f"| GPU: SM clock sweep | `python bench/gpu.py --clock-sweep-only` | not run: {sweep['error']} | — | "
                    f"— | {_gpu_file(path, g)} |")
    return rows


def _gpu_file(path: Path, data: dict) -> str:
    """A GPU row's result-file cell: the file, the commit its figures were measured on, and "stale since" when the
    code they describe changed after it (bench/provenance.py)."""
    return f"`{path.relative_to(ROOT)}`; {describe(data, ROOT)}"


def _gpu_rows(gpu) -> list[str]:
    """bench/gpu.py's figures and `make gpu-check`'s (power-limit sweep, vLLM, the gpu-marked tests)."""
    rows = []
    if gpu:
        path, g = gpu
        rel = _gpu_file(path, g)
        probe, runs = g["probe"], g["runs"]
        diffs = ", ".join(f"{r['counter_vs_integrated_rel_diff']:+.2%} ({r['window_s']:.1f} s)" for r in runs)
        worst = g["counter_vs_integrated_worst_abs"]
        rows.append(f"| GPU: counter vs integrated power | `python bench/gpu.py` | 1.1B Llama runs {diffs}; 12 s "
                    f"matmul window {probe['matmul_rel_diff']:+.2%} | ≤ 5 % | {_verdict(worst <= 0.05)} | {rel} |")
        rows.append(f"| GPU: counter update period | `python bench/gpu.py` | {probe['update_period_idle_ms']:.1f} ms idle, "
                    f"{probe['update_period_busy_ms']:.1f} ms busy | (measured) | — | {rel} |")
        rows.append(f"| GPU: idle baseline | `python bench/gpu.py` | {probe['baseline_w']:.1f} ± "
                    f"{probe['baseline_std_w']:.2f} W without a CUDA context; {runs[0]['baseline_w']:.1f} ± "
                    f"{runs[0]['baseline_std_w']:.2f} W holding the model | (measured) | — | {rel} |")
        share = ", ".join(f"{r['prefill_share']:.1%}" for r in runs)
        rows.append(f"| GPU: prefill share of energy | `python bench/gpu.py` | {share} (128-token prompts, 128 "
                    f"output tokens, batch 32) | (measured) | — | {rel} |")
        cpu = g["sampler_cpu_fraction_of_a_core"]
        rows.append(f"| GPU: sampler thread CPU | `python bench/gpu.py` | {cpu:.2%} of a core at 10 Hz (NVML counter "
                    f"read {probe['nvml_call_us']['energy_counter']['median_us'] / 1000:.1f} ms) | ≤ 1 % | "
                    f"{_verdict(cpu <= 0.01)} | {rel} |")
        ratio = g["measured_vs_unmeasured_median_ratio"]
        spread = [p["unmeasured_tps"] for p in g["pairs"]]
        rows.append(f"| GPU: measured vs unmeasured tok/s | `python bench/gpu.py` | {ratio:.3f} median of "
                    f"{len(g['pairs'])} pairs; unmeasured alone ranged {min(spread):.0f}–{max(spread):.0f} tok/s, so "
                    f"inconclusive | ≥ 0.99 | {_verdict(ratio >= 0.99)} | {rel} |")
    # the kernel stream: its own file (--kernel-only) or the full run's, whichever is newer
    found = [x for x in (_latest("gpu-kernel"), gpu) if x and "kernel_pairs" in x[1]]
    if found:
        path, k = max(found, key=lambda x: x[0].name.replace("gpu-kernel-", "gpu-"))
        ratio = k["kernel_measured_vs_unmeasured_median_ratio"]
        rows.append(f"| GPU: kernel stream with vs without sampling | `python bench/gpu.py --kernel-only` | "
                    f"{ratio:.4f} ({len(k['kernel_pairs'])} pairs of 400 bf16 8192² matmuls) | ≥ 0.99 | "
                    f"{_verdict(ratio >= 0.99)} | {_gpu_file(path, k)} |")
    rows += _clock_sweep_rows(gpu)
    sweep = _latest("gpu-sweep")
    if sweep:
        path, s = sweep
        p = s["power_sweep"]
        points = "; ".join(f"{r['power_limit_w']:g} W: applied {r['applied_w']}, seen {r['observed_max_w']}, "
                           f"{r['j_per_token']:.4f} J/token, {r['tokens_per_second']:.0f} tok/s" for r in p["rows"]
                           if r["j_per_token"] is not None)
        rows.append(f"| GPU: power-limit sweep through `lem run` | `make gpu-check` | {points or 'no point measured'}; "
                    f"power limit {p['power_limit_before_w']:g} W before, {p['power_limit_after_w']:g} W after | "
                    f"restored | {_verdict(bool(p['restored']) and len(p['rows']) == len(p['points_w']))} | "
                    f"{_gpu_file(path, s)} |")
    vllm = _latest("gpu-vllm")
    if vllm:
        path, v = vllm
        for name, run in v["vllm"]["runs"].items():
            figure = (f"{run['j_per_token']:.4f} J/token, {run['tokens_per_second']:.0f} tok/s, energy from "
                      f"{run['energy_source']}" if run.get("j_per_token") is not None else
                      f"no result (exit {run['returncode']})")
            rows.append(f"| GPU: vLLM {name} through `lem run` | `make gpu-check` | {figure} | measured | "
                        f"{_verdict(run['returncode'] == 0)} | {_gpu_file(path, v)} |")
    check = _latest("gpu-check")
    if check:
        path, c = check
        tests = c["steps"].get("tests", {}).get("tests", [])
        failed = [t["test"].rpartition("::")[2] for t in tests if t["outcome"] == "failed"]
        skipped = sum(t["outcome"].startswith("skipped") for t in tests)
        rows.append(f"| GPU: gpu-marked tests | `make gpu-check` | {len(tests) - len(failed) - skipped} passed, "
                    f"{len(failed)} failed{' (' + ', '.join(failed) + ')' if failed else ''}, {skipped} skipped | "
                    f"none failed | {_verdict(bool(tests) and not failed)} | {_gpu_file(path, c)} |")
        vskip = c["steps"].get("vllm", {}).get("skipped")
        if vskip:
            rows.append(f"| GPU: vLLM offline and serving | `make gpu-check` | not run: {vskip} | — | — | "
                        f"{_gpu_file(path, c)} |")
    return rows


def main() -> None:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/report.py` from the newest files in `bench/results/` (`make bench` runs every benchmark,",
        "then this). Machines here are noisy: each comparison alternates its two sides and reports per-pair ratios, so",
        "absolute times matter less than the ratios. Fidelity rows give the geometric mean of per-pair ratios with its",
        "95 % confidence interval (exact t quantile); they meet a target only when the whole interval lies inside it,",
        "and are inconclusive when it straddles a bound.",
        "",
        "| benchmark | command | figure | target | verdict | result file |",
        "|---|---|---|---|---|---|",
    ]
    iso = _latest("isolation")
    if iso:
        path, r = iso
        ratio = r["ratio_isolated_to_local_wall"]
        start = r["median"]["isolated"]["ready_s"] - r["median"]["local"]["ready_s"]
        lines.append(f"| isolation overhead | `python bench/isolation.py` | `--isolated`/local wall time {ratio:.3f} "
                     f"({r['reps']} pairs; container start overhead {start:.2f} s) | ≤ 1.10 | {_verdict(ratio <= 1.10)} "
                     f"| `{path.relative_to(ROOT)}` |")
    fid = None
    for backend in ("pytorch", "vllm"):
        found = _newest_with("fidelity", backend)
        if found is None:
            continue
        path, r = found
        fid = fid or found
        threads = r["workload"].get("omp_num_threads")
        m = r.get("machine", {})
        load = (f"; load average {m['load_average_start'][0]:.1f}→{m['load_average_end'][0]:.1f} on {m['cpus']} CPUs"
                if "load_average_end" in m else "")
        plain = "transformers `generate`" if backend == "pytorch" else "`LLM.generate`"
        rel = path.relative_to(ROOT)
        if "throughput" not in r[backend]:  # a file from before the CIs: a median of pairs, no interval
            old, target = r[backend], "within 3 %" if backend == "pytorch" else "≥ 0.97"
            lines.append(f"| fidelity, {backend}: throughput | `python bench/fidelity.py` | lem tok/s ÷ plain {plain} "
                         f"tok/s {old['ratio_lem_to_plain']:.3f} (median of {len(old['paired_ratios'])} pairs, no CI: "
                         f"an older run) | {target} | inconclusive | `{rel}` |")
            continue
        for figure, what in (("throughput", f"lem tok/s ÷ plain {plain} tok/s"),
                             ("cpu_per_token", "lem CPU s per output token ÷ plain's")):
            f = r[backend].get(figure)
            if f is None:
                continue
            ci = f["ci95"]
            interval = f"95 % CI [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "no CI"
            lines.append(f"| fidelity, {backend}: {figure.replace('_', ' ')} | `python bench/fidelity.py` | {what} "
                         f"{f['ratio']:.3f}, {interval} ({f['n']} interleaved pairs, geometric mean"
                         f"{f'; OMP_NUM_THREADS={threads}' if threads else ''}{load}) | {_target(f['target'])} (whole CI) "
                         f"| {f['verdict']} | `{rel}` |")
    ctl = _latest("controller")
    if ctl:
        path, c = ctl
        lines.append(f"| controller overhead | `python bench/controller.py` | "
                     f"{c['controller_overhead_s_per_experiment']:.3f} s per experiment ({c['experiments']} trivial "
                     f"experiments in one study: wall minus runner time) | ≤ 0.5 s | "
                     f"{_verdict(c['controller_overhead_s_per_experiment'] <= 0.5)} | `{path.relative_to(ROOT)}` |")
    reuse = _latest("reuse", "-2*.json")  # not reuse-serving-*
    if reuse:
        path, r = reuse
        on, off = r["pairs"][-1]["on"], r["pairs"][-1]["off"]
        shape = f"{r['points']} points × {r['cycles']} cycles, vLLM CPU image"
        lines.append(f"| engine reuse: wall time | `python bench/reuse.py` | reuse on/off {r['ratio_on_to_off_wall']:.3f} "
                     f"({shape}; {on['wall_s']:.0f} s vs {off['wall_s']:.0f} s, {on['engine_loads']} vs "
                     f"{off['engine_loads']} engine loads) | ≤ 0.35 | {_verdict(r['meets_ratio'])} | "
                     f"`{path.relative_to(ROOT)}` |")
        lines.append(f"| engine reuse: on-case vs its floor | `python bench/reuse.py` | wall ÷ (engine loads + windows + "
                     f"warmups + gaps) {r['on_wall_over_floor']:.2f} | ≤ 1.25 | {_verdict(r['meets_floor'])} | "
                     f"`{path.relative_to(ROOT)}` |")
        n = sum(len(m) for m in r["agreement"].values())
        ok = sum(v["agree"] for m in r["agreement"].values() for v in m.values())
        lines.append(f"| engine reuse: reused vs cold figures | `python bench/reuse.py` | tok/s, TTFT p50, ITL p50 of "
                     f"runs on a reused engine vs cold runs: {ok} of {n} 95 % CIs overlap | all | "
                     f"{_verdict(r['all_agree'])} | `{path.relative_to(ROOT)}` |")
    served = _latest("reuse-serving")
    if served:
        path, r = served
        on, off = r["pairs"][-1]["on"], r["pairs"][-1]["off"]
        n = sum(len(m) for m in r["agreement"].values())
        ok = sum(v["agree"] for m in r["agreement"].values() for v in m.values())
        lines.append(f"| engine reuse, serving: wall time | `python bench/reuse.py --scenario serving` | reuse on/off "
                     f"{r['ratio_on_to_off_wall']:.3f} ({r['points']} Poisson rates × {r['cycles']} cycles, lem's "
                     f"transformers server; {on['wall_s']:.0f} s vs {off['wall_s']:.0f} s, {on['engine_loads']} vs "
                     f"{off['engine_loads']} server starts); reused vs cold tok/s, TTFT p50, ITL p50: {ok} of {n} "
                     f"95 % CIs overlap | none (the ≤ 0.35 target is the offline study's) | reported | "
                     f"`{path.relative_to(ROOT)}` |")
    slurm = _latest("slurm")
    if slurm:
        path, r = slurm
        o, p = r["overhead"], r["polling"]
        lines.append(f"| Slurm: controller overhead | `python bench/slurm.py` | "
                     f"{o['controller_overhead_s_per_run']:.3f} s per run ({o['runs']} jobs on a single-node cluster; "
                     f"Slurm's own submit-to-start median {o['slurm_submit_to_start_s_median']} s, not counted) | "
                     f"≤ 0.5 s | {_verdict(o['controller_overhead_s_per_run'] <= 0.5)} | `{path.relative_to(ROOT)}` |")
        lines.append(f"| Slurm: polling {p['jobs_in_flight']} jobs in flight | `python bench/slurm.py` | "
                     f"{p['scheduler_calls_per_poll']} scheduler call per poll, {p['poll_s_median'] * 1000:.0f} ms "
                     f"median ({p['poll_s_max'] * 1000:.0f} ms max) | 1 call | "
                     f"{_verdict(p['scheduler_calls_per_poll'] == 1)} | `{path.relative_to(ROOT)}` |")
    lines += _serving_rows()
    gpu = _latest("gpu", "-2*.json")
    lines += _gpu_rows(gpu)
    machine = (iso or fid or (None, {}))[1].get("machine", {})
    lines += [
        "",
        f"Machine of the newest isolation run: {machine.get('platform', 'unknown')}, Python {machine.get('python', '?')}"
        " (2 CPU cores, no GPU, tiny random Llama: 16–32 prompts × 32 tokens).",
        "",
        f"GPU rows: {gpu[1]['gpu'] if gpu else 'no GPU run yet'} (a lent machine without Docker; `make gpu-check`, see "
        "the README). The model is TinyLlama-1.1B-shaped with random weights (synthetic_weights), bf16. Each GPU row "
        "names the commit its figures were measured on and says **stale since** the first later commit that changed "
        "the code they describe (bench/provenance.py: energy, devices, GPU state, the measurement loop, the PyTorch "
        "backend, bench/gpu.py); stale rows stay until a GPU machine reruns `make gpu-check`.",
        "",
    ]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(lines))
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
