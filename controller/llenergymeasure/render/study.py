"""A study on screen: at the end of ``lem run`` (from its outcome) and in ``lem results show DIR`` (from its
study_summary.json). Both print the same points table — one row per point, mean ± 95 % CI over its cycles, each
value to its CI's two significant digits, columns named by the catalogue (results/metrics.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from lem_runner.contract.config import CarbonConfig
from rich.console import Console
from rich.markup import escape

from llenergymeasure.errors import ConfigError
from llenergymeasure.render.compare import format_value, shown_metrics
from llenergymeasure.render.fit import Column, print_keyed
from llenergymeasure.render.text import figure
from llenergymeasure.results.compare import Value
from llenergymeasure.results.metrics import METRICS

#: the figures of the points table, in order (emissions only where a point has them; the serving figures only where
#: a point is a serving run)
POINT_METRICS = ("output_tokens_per_second", "ttft_p50_ms", "itl_p50_ms", "tpot_p50_ms", "achieved_rate_per_s",
                 "goodput_per_s", "capacity_rate_per_s", "energy_per_token_j", "energy_per_good_token_j",
                 "capacity_energy_per_good_token_j", "emissions_g")


def runs_ok(n_ok: int | None, n_failed: int | None) -> str:
    """``3/3``, or ``[red]2/3[/]`` when a cycle failed."""
    if n_ok is None:
        return "?"
    total = n_ok + (n_failed or 0)
    return f"{n_ok}/{total}" if not n_failed else f"[red]{n_ok}/{total}[/]"


def print_points(console: Console, title: str, rows: Sequence[tuple[str, str, str, dict[str, Value]]]) -> None:
    """(point, backend, runs ok, figures) rows as one table; a figure no point has gets no column, nor a serving
    figure no point measured; one backend for every point goes into the title rather than a column."""
    metrics = shown_metrics(POINT_METRICS, [values for *_, values in rows])
    backends = list(dict.fromkeys(backend for _, backend, _, _ in rows))
    keys = [] if len(backends) == 1 else [Column("backend", [escape(b) for _, b, _, _ in rows])]
    keys.append(Column("runs ok", [ok for _, _, ok, _ in rows], right=True))
    figures = [Column(METRICS[m].title, [format_value(values.get(m)) for *_, values in rows], right=True)
               for m in metrics]
    title += f" · backend {escape(backends[0])}" if len(backends) == 1 else ""
    print_keyed(console, title, [label for label, *_ in rows], keys, figures)


def _runs_table(console: Console, outcome) -> None:
    """A single-cycle study: one row per run (a failure's reason on its own line below the table)."""
    manifest, study_dir = outcome.manifest, outcome.study_dir
    backend = {p.index: p.backend for p in manifest.points}
    shown = [e for e in manifest.entries if e.status == "failed" or outcome.results.get(e.run) is not None]
    cols: dict[str, list[str]] = {c: [] for c in ("tok/s", "TTFT p50", "ITL p50", "J/token", "FLOPs", "status")}
    for e in shown:
        r = outcome.results.get(e.run)
        if e.status == "failed" or r is None:
            for c in ("tok/s", "TTFT p50", "ITL p50", "J/token", "FLOPs"):
                cols[c].append("")
            cols["status"].append("[red]failed[/]")
            continue
        cols["tok/s"].append(f"{r.output_tokens_per_second:.1f}")
        cols["TTFT p50"].append(f"{r.ttft.p50_ms:.1f} ms" if r.ttft else "—")
        cols["ITL p50"].append(f"{r.itl.p50_ms:.2f} ms" if r.itl else "—")
        cols["J/token"].append(figure(r.energy_per_token_j))
        cols["FLOPs"].append(f"{r.headline.flops:.3g}" if r.headline and r.headline.flops else "—")
        cols["status"].append("[green]done[/]")
    backends = list(dict.fromkeys(backend[e.point] for e in shown))
    runners = list(dict.fromkeys(e.runner or "" for e in shown))
    keys = [] if len(backends) == 1 else [Column("backend", [escape(backend[e.point]) for e in shown])]
    keys += [] if len(runners) == 1 else [Column("runner", [escape(e.runner or "") for e in shown])]
    figures = [Column(name, cells, right=name != "status") for name, cells in cols.items()]
    title = f"Study · {study_dir.name}" + "".join(f" · {what} {escape(v[0])}" for what, v in
                                                (("backend", backends), ("runner", runners)) if len(v) == 1 and v[0])
    print_keyed(console, title, [e.label for e in shown], keys, figures, key_name="experiment")


def render_study(console: Console, outcome, warnings=(), resume_hint: str | None = None) -> None:
    """The study ``lem run`` just ran: one row per point (mean ± 95 % CI over its cycles) when it has several
    cycles, else one row per run; then failures, CV warnings, the controller's overhead, and how to resume if runs
    are left."""
    manifest, study_dir = outcome.manifest, outcome.study_dir
    aggs = outcome.aggregates()
    if manifest.n_cycles > 1:
        rows = [(a.label, a.backend, runs_ok(a.n_ok, a.n_failed),
                 {m: Value(s.mean, s.ci95, s.n, s.std) for m, s in a.metrics.items()}) for a in aggs]
        print_points(console, f"Study · {study_dir.name} · {manifest.n_cycles} cycles (mean ± 95 % CI)", rows)
    else:
        _runs_table(console, outcome)
    for e in manifest.entries:
        if e.status == "failed":
            first = (e.error or "").splitlines()[0] if e.error else ""
            console.print(f"  [red]failed[/] {escape(e.label)} cycle {e.cycle} ({e.reason}): {escape(first)}")
    for reason in sorted({a.energy_unavailable_reason for a in aggs} - {None}):
        console.print(f"  energy null: {escape(reason)}")
    for warning in warnings:
        console.print(f"  [yellow]warning[/] {escape(warning)}")
    if manifest.controller_overhead_s_per_experiment is not None:
        console.print(f"  controller overhead: {manifest.controller_overhead_s_per_experiment:.3f} s per experiment "
                      "(study wall time less runner time and gaps, per run)")
    console.print(f"  summary: {study_dir / 'study_summary.json'} · {study_dir / 'study_summary.csv'} · "
                  f"manifest: {study_dir / 'manifest.json'}")
    left = manifest.count("pending", "running")
    if left:
        why = f" ({escape(manifest.stop_reason)})" if manifest.stop_reason else ""
        console.print(f"  [yellow]{left} run(s) not done{why}[/]"
                      + (f"; resume with: {escape(resume_hint)}" if resume_hint else ""))
    failed = manifest.count("failed")
    if failed and resume_hint:
        console.print(f"  {failed} run(s) failed; to run them again: {escape(resume_hint)} --retry-failed")


def render_study_folder(console: Console, study_dir: Path, carbon: CarbonConfig | None = None) -> None:
    """``lem results show`` of a study folder: status and counts, the points table and its warnings."""
    from llenergymeasure.results.compare import entries_for
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
    failed = {a.get("label"): a.get("n_failed") for a in data.get("aggregates", []) if isinstance(a, dict)}
    rows = []
    for e in entries_for(study_dir, carbon):
        label = e.title.split(": ", 1)[-1]
        rows.append((label, e.settings.get("backend", "?"), runs_ok(e.n_ok, failed.get(label)), e.values))
    print_points(console, "points (mean ± 95 % CI over cycles)", rows)
    reasons = {a.get("energy_unavailable_reason") for a in data.get("aggregates", [])} - {None}
    for reason in sorted(reasons):
        console.print(f"energy null: {escape(reason)}", highlight=False)
    for skipped in data.get("skipped") or []:
        console.print(f"[yellow]skipped[/] {escape(str(skipped))}")
    for w in data.get("warnings") or []:
        console.print(f"[yellow]warning[/] {escape(str(w))}")
    console.print(f"[dim]each run: lem results list {escape(str(study_dir))} · side by side: lem results compare "
                  f"{escape(str(study_dir))}[/]")
