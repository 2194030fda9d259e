"""``lem results show``: the full record of one experiment, grouped the way a reader checks it — energy first with
its method, baseline and quality warnings (a number is only as good as those), then windows, phases, latency,
throughput, FLOPs, warmup and environment."""

from __future__ import annotations

from lem_runner.contract import ExperimentResult, LatencyStats
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llenergymeasure.results.discover import Experiment
from llenergymeasure.results.listing import short_model


def _v(value: float | None, unit: str = "", spec: str = ".4g") -> str:
    return "null" if value is None else f"{format(value, spec)}{(' ' + unit) if unit else ''}"


def _group(title: str) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", title_style="bold", min_width=60)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    return table


def _energy(r: ExperimentResult) -> Table:
    e = r.energy
    t = _group("energy")
    t.add_row("sampler", escape(f"{e.sampler}" + (f" ({e.selected_because})" if e.selected_because else "")))
    t.add_row("method", escape(e.method))
    if r.total_energy_j is None:
        t.add_row("raw", f"null — {escape(e.unavailable_reason or 'no reason recorded')}")
    else:
        t.add_row("raw", f"{_v(r.total_energy_j, 'J')} · {_v(r.avg_energy_per_token_j, 'J/token')}")
    if e.baseline is not None:
        b = e.baseline
        spread = f" ± {b.power_std_w:.3g} W" if b.power_std_w is not None else ""
        t.add_row("baseline", f"{b.power_w:.4g} W{spread} idle over {b.duration_s:.3g} s ({b.n_samples} samples, "
                              f"{b.source}, measured {b.measured_at:%Y-%m-%d %H:%M:%S})")
    elif e.baseline_unavailable_reason:
        t.add_row("baseline", f"none — {escape(e.baseline_unavailable_reason)}")
    t.add_row("adjusted", f"{_v(e.adjusted_energy_j, 'J')} · {_v(r.avg_energy_per_token_adjusted_j, 'J/token')}")
    if e.per_device_j:
        t.add_row("per device", ", ".join(f"{k}: {v:.4g} J" for k, v in e.per_device_j.items()))
    if e.integrated_energy_j is not None:
        diff = f" ({e.counter_vs_integrated_rel_diff * 100:+.1f} % vs counter)" if e.counter_vs_integrated_rel_diff \
            is not None else ""
        t.add_row("cross-check", f"sampled power integrated: {e.integrated_energy_j:.4g} J{diff}")
    if e.counter_update_period_ms is not None:
        t.add_row("counter", f"updates every {e.counter_update_period_ms:.3g} ms · {e.counter_resets} reset(s)")
    if e.sample_hz:
        t.add_row("sampling", f"{e.sample_hz:g} Hz · {e.n_power_samples} samples in window"
                              + (f" · sampler CPU {e.sampler_cpu_s:.3g} s" if e.sampler_cpu_s is not None else "")
                              + (f" · timeseries {e.timeseries_file}" if e.timeseries_file else ""))
    t.add_row("quality flags", escape(", ".join(r.quality_flags)) or "none")
    for w in r.warnings:
        t.add_row("[yellow]warning[/]", escape(w))
    return t


def _windows(r: ExperimentResult) -> Table:
    t = Table(title=f"windows (headline: {r.measurement_methodology})", title_justify="left", title_style="bold")
    for col in ("window", "start s", "duration s", "out tokens", "tok/s", "energy J", "J/token", "adj. J/token",
                "mean W"):
        t.add_column(col, justify="left" if col == "window" else "right")
    for name, w in r.windows.items():
        t.add_row(name, f"{w.start_offset_s:.3f}", f"{w.duration_s:.3f}", str(w.output_tokens),
                  f"{w.tokens_per_second:.1f}", _v(w.energy_j), _v(w.energy_per_token_j),
                  _v(w.adjusted_energy_per_token_j), _v(w.mean_power_w))
    return t


def _phases(r: ExperimentResult) -> Table | None:
    if r.phases is None:
        return None
    note = r.phases.method + (f"; energy null: {r.phases.energy_unavailable_reason}"
                              if r.phases.energy_unavailable_reason else "")
    t = Table(title="phases", title_justify="left", title_style="bold", caption=escape(note), caption_justify="left")
    for col in ("phase", "time s", "tokens", "energy J", "share", "FLOPs"):
        t.add_column(col, justify="left" if col == "phase" else "right")
    for name in ("prefill", "decode"):
        p = getattr(r.phases, name)
        share = "null" if p.energy_share is None else f"{p.energy_share * 100:.1f} %"
        t.add_row(name, f"{p.time_s:.3f}", str(p.tokens), _v(p.energy_j), share, _v(p.flops, spec=".3e"))
    return t


def _latency_row(stats: LatencyStats | None) -> str:
    if stats is None:
        return "null (not recorded)"
    return (f"mean {stats.mean_ms:.2f} · p50 {stats.p50_ms:.2f} · p90 {stats.p90_ms:.2f} · p99 {stats.p99_ms:.2f} "
            f"· min {stats.min_ms:.2f} · max {stats.max_ms:.2f} ms (n={stats.n})")


def _rest(r: ExperimentResult) -> Table:
    t = _group("latency · throughput · FLOPs · warmup")
    t.add_row("TTFT", _latency_row(r.ttft))
    t.add_row("ITL", _latency_row(r.itl))
    if r.latency_method:
        t.add_row("latency method", escape(r.latency_method))
    t.add_row("throughput", f"{r.avg_tokens_per_second:.2f} output tok/s over {r.total_inference_time_sec:.3f} s "
                            f"({r.n_requests} requests, {r.input_tokens} in / {r.output_tokens} out tokens)")
    if r.flops is not None:
        f = r.flops
        t.add_row("FLOPs", f"{f.total:.3e} (prefill {f.prefill:.3e} · decode {f.decode:.3e}) · "
                           f"{_v(f.per_output_token, 'per output token', '.3e')} · "
                           f"{_v(f.achieved_flops_per_s, 'FLOP/s', '.3e')}")
        t.add_row("FLOPs method", escape(f.method + (f"; parameters from {f.parameter_source}" if f.parameter_source
                                                     else "")))
    elif r.total_flops is not None:
        t.add_row("FLOPs", f"{r.total_flops:.3e} ({escape(r.flops_method or '')})")
    if r.warmup is not None:
        cv = f", final CV {r.warmup.final_cv:.3f}" if r.warmup.final_cv is not None else ""
        t.add_row("warmup", f"{r.warmup.batches} batch(es), {r.warmup.mode}: {escape(r.warmup.stop_reason)}{cv}; "
                            "excluded from every figure")
    else:
        t.add_row("warmup", f"{r.warmup_batches} batch(es), excluded")
    t.add_row("model load", f"{r.model_load_sec:.2f} s (outside the window)")
    return t


def _environment(r: ExperimentResult) -> Table:
    env = r.environment
    t = _group("environment")
    t.add_row("host", escape(f"{env.hostname} · {env.os or env.platform} · Python {env.python}"))
    t.add_row("CPU", escape(f"{env.cpu_model or '?'} · {env.cpu_count or '?'} cores · "
                            f"{_v(env.ram_total_gib, 'GiB RAM', '.1f')}"))
    for g in env.gpus:
        t.add_row(f"GPU {g.index}", escape(f"{g.name} · {_v(g.power_limit_w, 'W limit', '.0f')} · "
                                           f"persistence {g.persistence_mode} · {g.memory_total_mib} MiB"))
    if env.driver_version or env.cuda_version:
        t.add_row("driver / CUDA", f"{env.driver_version} / {env.cuda_version}")
    t.add_row("libraries", escape(", ".join(f"{k} {v}" for k, v in sorted(env.libraries.items()))))
    t.add_row("runner", f"lem_runner {env.runner_version} · "
                        + (f"container {escape(env.image)}" if env.image else "local process"))
    t.add_row("backend", escape(", ".join(f"{k}={v}" for k, v in r.backend_details.items())))
    return t


def render_experiment(console: Console, e: Experiment) -> None:
    """The whole record, or for a failed run its error."""
    if e.result is None:
        console.print(f"[bold]{escape(e.experiment_id)}[/] · [red]{e.status}[/]: {escape(e.failure or '')}")
        if e.error is not None and e.error.traceback:
            console.print(f"[dim]traceback kept in {escape(str(e.path / 'error.json'))}[/]")
        return
    r = e.result
    c = r.config
    console.print(f"[bold]{escape(r.experiment_id)}[/] · {escape(short_model(c.model))} · {c.backend} · "
                  f"{r.start_time:%Y-%m-%d %H:%M:%S} UTC · {(r.end_time - r.start_time).total_seconds():.1f} s")
    console.print(f"[dim]{escape(str(e.path))} · config hash {r.measurement_config_hash} · schema "
                  f"{r.schema_version}[/]")
    for table in (_energy(r), _windows(r), _phases(r), _rest(r), _environment(r)):
        if table is not None:
            console.print(table)
