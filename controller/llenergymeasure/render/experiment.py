"""``lem results show`` of an experiment: its full record, grouped the way a reader checks it — energy first with
its method, baseline and quality warnings (a number is only as good as those), then windows, phases, latency,
throughput, FLOPs, warmup and environment."""

from __future__ import annotations

from lem_runner.contract import ExperimentResult
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llenergymeasure.render.energy import energy_rows, serving_rows
from llenergymeasure.render.fit import Column, Fitted
from llenergymeasure.render.text import figure, latency
from llenergymeasure.results.discover import Experiment
from llenergymeasure.results.points import short_model


def _group(title: str) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", title_style="bold", min_width=60)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    return table


def _energy(r: ExperimentResult) -> Table:
    t = _group("energy")
    for row in energy_rows(r, full=True):
        t.add_row(*row)
    return t


def _windows(r: ExperimentResult) -> Fitted:
    """One row per window, fitted to the terminal (window names whole; figures continue below when narrow)."""
    rows = list(r.windows.items())
    figures = [Column(name, cells, right=True) for name, cells in (
        ("start s", [f"{w.start_offset_s:.3f}" for _, w in rows]),
        ("duration s", [f"{w.duration_s:.3f}" for _, w in rows]),
        ("out tokens", [str(w.output_tokens) for _, w in rows]),
        ("tok/s", [f"{w.tokens_per_second:.1f}" for _, w in rows]),
        ("energy J", [figure(w.energy_j) for _, w in rows]), ("J/token", [figure(w.energy_per_token_j) for _, w in rows]),
        ("adj. J/token", [figure(w.adjusted_energy_per_token_j) for _, w in rows]),
        ("mean W", [figure(w.mean_power_w) for _, w in rows]))]
    return Fitted(f"windows (headline: {r.measurement_methodology})", [Column("window", [n for n, _ in rows])],
                  figures)


def _phases(r: ExperimentResult) -> Fitted | None:
    if r.phases is None:
        return None
    note = r.phases.method + (f"; energy null: {r.phases.energy_unavailable_reason}"
                              if r.phases.energy_unavailable_reason else "")
    ps = [(name, getattr(r.phases, name)) for name in ("prefill", "decode")]
    figures = [Column(name, cells, right=True) for name, cells in (
        ("time s", [f"{p.time_s:.3f}" for _, p in ps]), ("tokens", [str(p.tokens) for _, p in ps]),
        ("energy J", [figure(p.energy_j) for _, p in ps]),
        ("share", ["null" if p.energy_share is None else f"{p.energy_share * 100:.1f} %" for _, p in ps]),
        ("FLOPs", [figure(p.flops, spec=".3e") for _, p in ps]))]
    return Fitted("phases", [Column("phase", [n for n, _ in ps])], figures, caption=f"[dim]{escape(note)}[/]")


def _rest(r: ExperimentResult) -> Table:
    t = _group("latency · throughput · FLOPs · warmup")
    t.add_row("TTFT", latency(r.ttft, extremes=True))
    t.add_row("ITL", latency(r.itl, extremes=True))
    if r.latency_method:
        t.add_row("latency method", escape(r.latency_method))
    w = r.whole_run
    t.add_row("throughput", f"{r.output_tokens_per_second:.2f} output tok/s: {r.output_tokens} output tokens over "
                            f"{r.inference_time_s:.3f} s ({r.measurement_methodology} window)")
    t.add_row("whole run", f"{w.n_requests} requests, {w.input_tokens} in / {w.output_tokens} out tokens in "
                           f"{w.duration_s:.3f} s")
    if r.flops is not None:
        f = r.flops
        head_flops = r.headline.flops if r.headline else None
        head = f"{head_flops:.3e} in the {r.measurement_methodology} window · " if head_flops is not None else ""
        t.add_row("FLOPs", f"{head}whole run {f.total:.3e} (prefill {f.prefill:.3e} · decode {f.decode:.3e}) · "
                           f"{figure(f.per_output_token, 'per output token', '.3e')} · "
                           f"{figure(f.achieved_flops_per_s, 'FLOP/s', '.3e')}")
        t.add_row("FLOPs method", escape(f.method + (f"; parameters from {f.parameter_source}" if f.parameter_source
                                                     else "")))
    cv = f", final CV {r.warmup.final_cv:.3f}" if r.warmup.final_cv is not None else ""
    t.add_row("warmup", f"{r.warmup.batches} batch(es), {r.warmup.mode}: {escape(r.warmup.stop_reason)}{cv}; "
                        "excluded from every figure")
    t.add_row("model load", model_load_line(r))
    return t


def model_load_line(r: ExperimentResult) -> str:
    """This run's load, or, on an engine kept loaded from an earlier run of its session (model_load_s is 0 then),
    that it was reused and how long its original load took."""
    e = r.engine
    if e is not None and not e.fresh:
        runs = f"{e.runs_served} earlier run{'s' if e.runs_served != 1 else ''}"
        return f"none: the engine was reused (it had served {runs}; its load took {e.load_s:.2f} s, outside every window)"
    return f"{r.model_load_s:.2f} s (outside the window)"


def _environment(r: ExperimentResult) -> Table:
    env = r.environment
    t = _group("environment")
    t.add_row("host", escape(f"{env.hostname} · {env.os or env.platform} · Python {env.python}"))
    t.add_row("CPU", escape(f"{env.cpu_model or '?'} · {env.cpu_count or '?'} cores · "
                            f"{figure(env.ram_total_gib, 'GiB RAM', '.1f')}"))
    for g in env.gpus:
        t.add_row(f"GPU {g.index}", escape(f"{g.name} · {figure(g.power_limit_w, 'W limit', '.0f')} · "
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
    if r.serving is None:
        return None
    s = r.serving
    t = _group("serving")
    for row in serving_rows(r):
        t.add_row(*row)
    t.add_row("steady state", "none" if s.steady_state_duration_s is None else
              f"{s.steady_state_duration_s:.2f} s from {s.steady_state_start_s:.2f} s · "
              f"{s.steady_state_output_tokens} tokens · energy {figure(s.steady_state_energy_j, 'J')}")
    t.add_row("schedule lag", f"p50 {figure(s.schedule_lag_p50_ms, 'ms')} · p99 {figure(s.schedule_lag_p99_ms, 'ms')}")
    if s.energy_unavailable_reason:
        t.add_row("energy", f"null — {escape(s.energy_unavailable_reason)}")
    t.add_row("records", "requests.parquet" + (f" · {s.server_log}" if s.server_log else ""))
    return t


def _task(r: ExperimentResult) -> Table | None:
    """Task accuracy (config quality.task), scored after the energy window."""
    task = r.quality.task if r.quality is not None else None
    if task is None:
        return None
    t = _group("task accuracy")
    spread = "" if task.stderr is None else f" ± {task.stderr:.3f}"
    t.add_row("acc", f"{task.accuracy:.3f}{spread} (stderr) · acc_norm "
              f"{'-' if task.accuracy_norm is None else f'{task.accuracy_norm:.3f}'}")
    t.add_row("task", f"{escape(task.name)} · {task.n_items} items · {task.scorer} · {task.duration_s:.1f} s after "
              "the window")
    return t


def _fidelity(r: ExperimentResult) -> Table | None:
    """Output fidelity against the study's reference and perplexity (config quality.reference, quality.perplexity),
    taken after the energy window."""
    q = r.quality
    if q is None or (q.fidelity is None and q.perplexity is None):
        return None
    t = _group("output fidelity")
    f = q.fidelity
    if f is not None:
        t.add_row("reference", f"{escape(f.reference)} · {f.n_requests} requests · {f.duration_s:.1f} s after the "
                  "window")
        t.add_row("exact match", f"{f.exact_match:.3f} · agreement {f.agreement:.3f} · first divergence "
                  f"{f.first_divergence_mean:.1f} tokens")
        kl = "null (no log-probabilities)" if f.kl_mean_nats is None else \
            f"{f.kl_mean_nats:.3g} nats over {f.kl_tokens} tokens · {escape(f.kl_source or '')}"
        t.add_row("KL", kl)
    p = q.perplexity
    if p is not None:
        t.add_row("perplexity", f"{p.perplexity:.4g} · {p.tokens} tokens of {escape(p.text)} · {p.duration_s:.1f} s")
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
    for table in (_energy(r), _windows(r), _phases(r), _serving(r), _fidelity(r), _task(r), _rest(r), _environment(r)):
        if table is not None:
            console.print(table)
