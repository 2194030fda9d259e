"""``lem results show``: the full record of one experiment, grouped the way a reader checks it — energy first with
its method, baseline and quality warnings (a number is only as good as those), then windows, phases, latency,
throughput, FLOPs, warmup and environment."""

from __future__ import annotations

import json
from pathlib import Path

from lem_runner.contract import ExperimentResult, LatencyStats
from lem_runner.contract.config import CarbonConfig
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llenergymeasure.errors import ConfigError
from llenergymeasure.results.carbon import (
    J_PER_KWH,
    describe_carbon,
    emissions_per_token_g,
    not_measured_reason,
    result_emissions_g,
)
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
        if b.cache_check is not None:
            t.add_row("baseline cache", escape(f"{b.cache_check.outcome}: {b.cache_check.reason}"))
    elif e.baseline_unavailable_reason:
        t.add_row("baseline", f"none — {escape(e.baseline_unavailable_reason)}")
    t.add_row("adjusted", _adjusted(r))
    g = result_emissions_g(r)
    if g is None:
        t.add_row("emissions", escape(not_measured_reason(r)))
    else:
        t.add_row("emissions", f"{g:.4g} g CO2e · {_v(emissions_per_token_g(r), 'g/token')} "
                               f"({r.total_energy_j / J_PER_KWH:.4g} kWh × {escape(describe_carbon(r.config.carbon))})")
    if e.per_device_j:
        t.add_row("per device", ", ".join(f"{k}: {v:.4g} J" for k, v in e.per_device_j.items()))
    if e.integrated_energy_j is not None:
        diff = f" ({e.counter_vs_integrated_rel_diff * 100:+.1f} % vs counter)" if e.counter_vs_integrated_rel_diff \
            is not None else ""
        t.add_row("cross-check", f"sampled power integrated over the total window: {e.integrated_energy_j:.4g} J{diff}")
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


def adjusted_reason(r: ExperimentResult) -> str:
    """Why a run has no idle-adjusted energy, in words."""
    if r.total_energy_j is None:
        return "energy not measured"
    return r.energy.baseline_unavailable_reason or "no idle baseline"


def _adjusted(r: ExperimentResult) -> str:
    e = r.energy
    if e.adjusted_energy_j is None:
        return f"not measured ({escape(adjusted_reason(r))})"
    return f"{_v(e.adjusted_energy_j, 'J')} · {_v(r.avg_energy_per_token_adjusted_j, 'J/token')}"


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
    w = r.whole_run
    t.add_row("throughput", f"{r.output_tokens_per_second:.2f} output tok/s: {r.output_tokens} output tokens over "
                            f"{r.total_inference_time_sec:.3f} s ({r.measurement_methodology} window)")
    t.add_row("whole run", f"{w.n_requests} requests, {w.input_tokens} in / {w.output_tokens} out tokens in "
                           f"{w.duration_s:.3f} s")
    if r.flops is not None:
        f = r.flops
        head = f"{r.total_flops:.3e} in the {r.measurement_methodology} window · " if r.total_flops is not None else ""
        t.add_row("FLOPs", f"{head}whole run {f.total:.3e} (prefill {f.prefill:.3e} · decode {f.decode:.3e}) · "
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


def _serving(r: ExperimentResult) -> Table | None:
    """The serving figures (same rows as the run summary), with the steady state and the definitions' sources."""
    from llenergymeasure.display import serving_rows

    if r.serving is None:
        return None
    s = r.serving
    t = _group("serving")
    for row in serving_rows(r):
        t.add_row(*row)
    t.add_row("steady state", "none" if s.steady_state_duration_s is None else
              f"{s.steady_state_duration_s:.2f} s from {s.steady_state_start_s:.2f} s · "
              f"{s.steady_state_output_tokens} tokens · {_v(s.steady_state_energy_j, 'J')}")
    t.add_row("schedule lag", f"p50 {_v(s.schedule_lag_p50_ms, 'ms')} · p99 {_v(s.schedule_lag_p99_ms, 'ms')}")
    if s.energy_unavailable_reason:
        t.add_row("energy", f"null — {escape(s.energy_unavailable_reason)}")
    t.add_row("records", "requests.parquet" + (f" · {s.server_log}" if s.server_log else ""))
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
    for table in (_energy(r), _windows(r), _phases(r), _serving(r), _rest(r), _environment(r)):
        if table is not None:
            console.print(table)


def render_study(console: Console, study_dir: Path, carbon: CarbonConfig | None = None) -> None:
    """A study folder: status and counts, one row per point (mean ± 95 % CI over its cycles) and its warnings."""
    from llenergymeasure.results.compare import entries_for
    from llenergymeasure.results.compare_view import METRIC_LABELS, format_value
    from llenergymeasure.results.discover import MANIFEST_FILE, SUMMARY_FILE

    source = study_dir / SUMMARY_FILE
    if not source.is_file():
        raise ConfigError(f"{study_dir}: study has no {SUMMARY_FILE} yet (no run finished); its runs: "
                          f"lem results list {study_dir}")
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{source}: not a readable study summary ({exc})") from None
    console.print(f"[bold]study {escape(str(data.get('study', study_dir.name)))}[/] · {data.get('status', '?')} · "
                  f"{data.get('finished', '?')}/{data.get('planned', '?')} runs finished, {data.get('failed', 0)} "
                  f"failed · {data.get('n_cycles', '?')} cycle(s), order {data.get('order', '?')}", highlight=False)
    console.print(f"[dim]{escape(str(study_dir))} · {MANIFEST_FILE} · config hash {data.get('config_hash')}[/]")
    entries = entries_for(study_dir, carbon)
    metrics = [m for m in ("output_tokens_per_second", "energy_per_token_j", "emissions_g", "ttft_p50_ms")
               if any(m in e.values for e in entries)]
    table = Table(title="points (mean ± 95 % CI over cycles)", title_justify="left", title_style="bold")
    table.add_column("point", overflow="fold")
    table.add_column("runs ok", justify="right")
    for m in metrics:
        table.add_column(METRIC_LABELS[m], justify="right")
    for e in entries:
        table.add_row(escape(e.title.split(": ", 1)[-1]), e.settings.get("cycles ok", "?"),
                      *(format_value(e.values.get(m)) for m in metrics))
    console.print(table)
    reasons = {a.get("energy_unavailable_reason") for a in data.get("aggregates", [])} - {None}
    for reason in sorted(reasons):
        console.print(f"energy null: {escape(reason)}", highlight=False)
    for skipped in data.get("skipped") or []:
        console.print(f"[yellow]skipped[/] {escape(str(skipped))}")
    for w in data.get("warnings") or []:
        console.print(f"[yellow]warning[/] {escape(str(w))}")
    console.print(f"[dim]each run: lem results list {escape(str(study_dir))} · side by side: lem results compare "
                  f"{escape(str(study_dir))}[/]")
