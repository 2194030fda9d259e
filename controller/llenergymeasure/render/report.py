"""``lem results report DIR -o report.html``: one self-contained HTML file a reader can open anywhere, offline: the
study tables (mean ± 95 % CI per point, a column per swept parameter), the single runs, the efficiency and power
figures as inline SVG, the environment, how each figure was measured, and every warning. No script, no stylesheet
or image fetched from anywhere: the CSS is inline and the figures are part of the page."""

from __future__ import annotations

import html
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from lem_runner.contract.atomic import atomic_write_text
from lem_runner.contract.config import CarbonConfig
from lem_runner.contract.nvml import SIMULATED_SOURCE

from llenergymeasure.errors import ConfigError
from llenergymeasure.render.compare import METRIC_LABELS, format_value, shown_metrics
from llenergymeasure.results.carbon import describe_carbon, result_emissions_g, with_carbon
from llenergymeasure.results.compare import Entry, Value, entries_for
from llenergymeasure.results.discover import SUMMARY_FILE, Experiment, find_experiments
from llenergymeasure.results.frame import timeseries_path
from llenergymeasure.results.metrics import METRICS
from llenergymeasure.results.points import label_params, short_model

MAX_POWER_FIGURES = 6
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1b1b;margin:2em auto;max-width:1100px;
padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e2e2e2;padding:.25em .6em;text-align:right;vertical-align:top;white-space:nowrap}
td.l{white-space:normal}.scroll{overflow-x:auto}
th{background:#f4f4f4;white-space:normal}td.l,th.l{text-align:left}.muted{color:#666}.warn{color:#8a5300}
figure{margin:1em 0}figure svg{max-width:100%;height:auto}figcaption{color:#555;font-size:.9em}
ul{padding-left:1.3em}code{background:#f4f4f4;padding:0 .2em;overflow-wrap:anywhere}
td.id,th.id,span.nw{white-space:nowrap}
@media (max-width:1000px){body{font-size:13px}th,td{padding:.2em .35em;white-space:normal}td.id{white-space:nowrap}}
"""
_REPORT_METRICS = ("output_tokens_per_second", "energy_per_token_j", "energy_per_token_adjusted_j", "emissions_g",
                   "ttft_p50_ms", "itl_p50_ms", "tpot_p50_ms", "achieved_rate_per_s", "goodput_per_s",
                   "energy_per_good_token_j")
#: a serving single run's row: its load and the serving figures beside throughput and energy
_SERVING_SINGLE = ("offered_rate_per_s", "concurrency_clients", "achieved_rate_per_s", "goodput_per_s",
                   "tpot_p50_ms", "output_tokens_per_second", "energy_per_token_j", "energy_per_good_token_j")


def _e(text: object) -> str:
    return html.escape(str(text))


def _svg(fig) -> str:
    """The figure as an inline <svg> element (the XML prolog and doctype dropped)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _cell(text: str, listed: bool) -> str:
    """A cell's HTML: a CI kept with its sign; a list of identifiers (``torch 2.13.0, nvidia-ml-py 13.6``) broken
    only between its items, never at a hyphen inside one."""
    if listed:
        return ", ".join(f'<span class="nw">{_e(item)}</span>' for item in text.split(", "))
    return _e(text).replace(" ± ", " ±&nbsp;")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, ident: int = 1,
           lists: Sequence[int] = ()) -> str:
    """An HTML table; the first ``left`` columns left-aligned, the first ``ident`` of them identifiers (run names,
    parameter values) that never wrap, while the other cells may wrap between words on a narrow page (the ``lists``
    columns between their items only)."""
    def cls(i: int) -> str:
        names = " ".join(n for n, on in (("l", i < left), ("id", i < ident)) if on)
        return f' class="{names}"' if names else ""
    out = ["<table><thead><tr>", *(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(head)), "</tr></thead><tbody>"]
    for row in rows:
        # "80 ± 940" may break before the ± (never after it: the CI stays with its sign); a short row's last cell
        # spans the columns it lacks (a failed run's reason across the figures it has none of)
        span = len(head) - len(row) + 1
        out += ["<tr>", *(f"<td{cls(i)}{f' colspan={span}' if span > 1 and i == len(row) - 1 else ''}>"
                          f"{_cell(c, i in lists)}</td>" for i, c in enumerate(row)), "</tr>"]
    return '<div class="scroll">' + "".join(out + ["</tbody></table>"]) + "</div>"


def _study_section(study_dir: Path, carbon: CarbonConfig | None, serving: bool = False) -> tuple[str, list[str]]:
    """A study's points table: a column per swept parameter, the backend (in the heading when every point shares
    it), runs ok and the figures; a figure null at every point is named once under the table instead of a column
    of ``null`` (so the table fits a narrow page)."""
    data = json.loads((study_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    entries: list[Entry] = entries_for(study_dir, carbon)
    params = list(dict.fromkeys(k for e in entries for k in label_params(e.title.split(": ", 1)[-1])))
    metrics = [m for m in _REPORT_METRICS if any(m in e.values for e in entries)] if serving else \
        shown_metrics(_REPORT_METRICS, [e.values for e in entries])  # offline: no serving figure, not even null
    null_everywhere = [m for m in metrics if all(e.values.get(m) is None or e.values[m].mean is None for e in entries)]
    metrics = [m for m in metrics if m not in null_everywhere]
    backends = list(dict.fromkeys(e.settings.get("backend", "?") for e in entries))
    by_point = len(backends) > 1
    rows = []
    for e in entries:
        p = label_params(e.title.split(": ", 1)[-1])
        point = [] if params else [e.title.split(": ", 1)[-1]]  # the parameter columns say what the label says
        rows.append([*point, *(p.get(k, "") for k in params), *([e.settings.get("backend", "?")] if by_point else []),
                     e.settings.get("cycles ok", "?"), *(format_value(e.values.get(m)) for m in metrics)])
    head = [*([] if params else ["point"]), *params, *(["backend"] if by_point else []), "runs ok",
            *(METRIC_LABELS[m] for m in metrics)]
    name = data.get("study", study_dir.name)
    status = (f"{data.get('status', '?')} · {data.get('finished', '?')}/{data.get('planned', '?')} runs finished, "
              f"{data.get('failed', 0)} failed · {data.get('n_cycles', '?')} cycle(s), order {data.get('order', '?')}"
              + ("" if by_point else f" · backend {backends[0]}"))
    notes = [f"study {name}: {w}" for w in data.get("warnings") or []]
    notes += [f"study {name}: skipped {s}" for s in data.get("skipped") or []]
    reasons = sorted({a.get("energy_unavailable_reason") for a in data.get("aggregates", [])} - {None})
    notes += [f"study {name}: energy null: {r}" for r in reasons]
    nulls = "" if not null_everywhere else (
        f"<p class=muted>null at every point: {_e(', '.join(METRIC_LABELS[m] for m in null_everywhere))}"
        + (f" (energy null: {_e('; '.join(reasons))})" if reasons else "") + "</p>")
    n_id = max(1, len(params))
    body = (f"<h3>study {_e(name)}</h3><p class=muted>{_e(status)}<br><code>{_e(study_dir)}</code></p>"
            + _table(head, rows, left=n_id + by_point, ident=n_id + by_point) + nulls)
    return body, notes


def _failed_row(e: Experiment) -> list[str]:
    """A failed run: its model and backend from the config.json lem saved in its folder, and why it failed."""
    c = e.config
    return [e.path.name, short_model(c.model) if c else "?", c.backend if c else "?", "failed: " + (e.failure or "")]


def _singles_section(singles: Sequence[Experiment]) -> str:
    rows = []
    for e in singles:
        r = e.result
        if r is None:
            rows.append(_failed_row(e))
            continue
        rows.append([e.experiment_id, short_model(r.config.model), r.config.backend, "done",
                     format_value(Value(r.output_tokens_per_second)), format_value(Value(r.energy_per_token_j)),
                     format_value(Value(result_emissions_g(r)))])
    return _table(["experiment", "model", "backend", "status", METRIC_LABELS["output_tokens_per_second"],
                   METRIC_LABELS["energy_per_token_j"], METRIC_LABELS["emissions_g"]], rows, left=4, ident=3)


def _serving_singles_section(singles: Sequence[Experiment]) -> str:
    """Serving runs outside a study: the load they were offered and the serving figures (goodput, TPOT, J per
    good token; definitions in docs/method.md, "Serving")."""
    metrics = [m for m in _SERVING_SINGLE if any(METRICS[m].read(e.result) is not None for e in singles)]
    rows = [[e.experiment_id, short_model(e.result.config.model), e.result.config.backend,  # type: ignore[union-attr]
             *(format_value(Value(METRICS[m].read(e.result))) for m in metrics)] for e in singles]
    return _table(["experiment", "model", "backend", *(METRICS[m].title for m in metrics)], rows, left=3, ident=3)


def _is_serving(e: Experiment) -> bool:
    return e.result is not None and e.result.serving is not None or \
        e.result is None and e.config is not None and e.config.scenario == "serving"


def _environment(ok: Sequence[Experiment]) -> str:
    envs = {}
    for e in ok:
        env = e.result.environment  # type: ignore[union-attr]
        gpus = ", ".join(f"{g.name} ({g.power_limit_w or '?'} W limit)" for g in env.gpus) or "none"
        key = (env.hostname, env.cpu_model or "?", gpus, env.driver_version or "—", env.cuda_version or "—",
               ", ".join(f"{k} {v}" for k, v in sorted(env.libraries.items())), env.runner_version,
               env.image or "local process")
        envs[key] = envs.get(key, 0) + 1
    rows = [[*k, str(n)] for k, n in envs.items()]
    return _table(["host", "CPU", "GPUs", "driver", "CUDA", "libraries", "runner", "image", "runs"], rows, left=8,
                  lists=(5,))


def _method(ok: Sequence[Experiment], carbon: CarbonConfig | None) -> str:
    methods = sorted({f"{e.result.energy.source}: {e.result.energy.method}" for e in ok})  # type: ignore[union-attr]
    windows = sorted({e.result.measurement_methodology for e in ok})  # type: ignore[union-attr]
    carbons = sorted({describe_carbon(e.result.config.carbon) for e in ok})  # type: ignore[union-attr]
    items = [
        "Energy source: " + "; ".join(methods) + ". Energy that was not measured is null with its reason, never 0.",
        "Headline window: " + ", ".join(windows) + ". Energy per token = energy over the window / output tokens; "
        "idle-adjusted subtracts the idle baseline power × window duration.",
        "Study points: mean ± 95 % confidence interval over cycles (Student's t, n − 1 degrees of freedom), each "
        "value to the interval's two significant digits; single runs to three significant digits.",
        "Emissions (gCO2e) = energy (J) / 3.6e6 × PUE × grid intensity; inputs: " + ", ".join(carbons)
        + (" (from --grid-intensity)" if carbon else " (from each run's carbon: settings)")
        + ". Null when energy is null; never estimated from TDP.",
        "Full definitions: docs/method.md in the lem repository.",
    ]
    simulated = sum(e.result.energy.source == SIMULATED_SOURCE for e in ok)  # type: ignore[union-attr]
    if simulated:
        items.insert(0, f"SIMULATED GPU: {simulated} of {len(ok)} runs took their energy from lem's simulated NVML "
                        "device (LEM_SIMULATED_GPU), not from hardware; their figures are not measurements.")
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def build_report(directory: Path, carbon: CarbonConfig | None = None, title: str | None = None) -> str:
    """The report's HTML for every experiment under ``directory``."""
    from llenergymeasure.results.plot import configurations, efficiency_figure, offline_runs, power_figure
    from llenergymeasure.results.serving_plot import serving_figure, serving_points
    from llenergymeasure.version import __version__

    experiments = with_carbon(find_experiments(directory), carbon)
    ok = [e for e in experiments if e.result is not None]
    if not ok:
        raise ConfigError(f"{directory}: every experiment failed; nothing to report")
    study_dirs = sorted({e.path.parent for e in experiments if e.study and (e.path.parent / SUMMARY_FILE).is_file()})
    serving_studies = {e.path.parent for e in experiments if e.path.parent in study_dirs and _is_serving(e)}
    singles = [e for e in experiments if e.path.parent not in study_dirs]
    serving_singles = [e for e in singles if e.result is not None and _is_serving(e)]
    notes: list[str] = []
    parts = [f"<h1>{_e(title or f'lem report · {directory}')}</h1>",
             f"<p class=muted>{len(experiments)} experiment(s), {len(ok)} with a result · generated "
             f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC by lem {_e(__version__)}</p>"]
    offline_singles = [e for e in singles if e not in serving_singles]
    if offline_singles or set(study_dirs) - serving_studies:
        parts.append("<h2>Results</h2>")
    for d in study_dirs:
        if d not in serving_studies:
            body, study_notes = _study_section(d, carbon)
            parts.append(body)
            notes += study_notes
    if offline_singles:
        parts += ["<h3>single runs</h3>", _singles_section(offline_singles)]
    configs = configurations(offline_runs(ok))
    if configs:
        fig, _ = efficiency_figure(configs)
        what = "Energy per output token against throughput" if any(c.jpt.mean is not None for c in configs) else \
            "Throughput per configuration (no energy measured)"
        parts += ["<h2>Efficiency</h2>", f"<figure>{_svg(fig)}<figcaption>{what} (offline runs; serving runs are "
                  "under Serving); numbers refer to the key under the axes.</figcaption></figure>"]
    if serving_studies or serving_singles:
        parts.append("<h2>Serving</h2><p class=muted>Runs driven by lem's load generator against a server: "
                     "goodput (requests/s meeting every SLO bound), TPOT (time per output token after the first), "
                     "the achieved request rate and J per good token; definitions in docs/method.md, "
                     "\u201cServing\u201d.</p>")
        for d in sorted(serving_studies):
            body, study_notes = _study_section(d, carbon, serving=True)
            parts.append(body)
            notes += study_notes
        if serving_singles:
            parts += ["<h3>single serving runs</h3>", _serving_singles_section(serving_singles)]
        spoints = serving_points(ok)
        if spoints:
            sfig, _ = serving_figure(spoints)
            parts.append(f"<figure>{_svg(sfig)}<figcaption>The serving runs against the load they were offered "
                         "(serving.png of lem results plot); the figure's title says what is drawn.</figcaption>"
                         "</figure>")
    with_series = [(e, p) for e in ok if (p := timeseries_path(e)) is not None]
    if with_series:
        parts.append("<h2>Power</h2>")
        for e, p in with_series[:MAX_POWER_FIGURES]:
            pfig, _ = power_figure(e, p)
            parts.append(f"<figure>{_svg(pfig)}<figcaption>{_e(e.experiment_id)}</figcaption></figure>")
        if len(with_series) > MAX_POWER_FIGURES:
            parts.append(f"<p class=muted>{len(with_series) - MAX_POWER_FIGURES} more power timeseries: "
                         f"<code>lem results plot {_e(directory)}</code></p>")
    parts += ["<h2>Environment</h2>", _environment(ok), "<h2>Method</h2>", _method(ok, carbon)]
    for e in experiments:
        if e.result is None:
            notes.append(f"{e.path.name}: failed: {e.failure}")
            continue
        notes += [f"{e.experiment_id}: {w}" for w in e.result.warnings]
        notes += [f"{e.experiment_id}: quality flag {q}" for q in e.result.quality_flags]
    parts.append("<h2>Warnings</h2>")
    parts.append("<ul>" + "".join(f'<li class="warn">{_e(n)}</li>' for n in notes) + "</ul>" if notes
                 else "<p>none</p>")
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content=\"width=device-width,initial-scale=1\">"
            f"<title>{_e(title or f'lem report · {directory.name}')}</title><style>{_CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def write_report(directory: Path, out: Path | None = None, carbon: CarbonConfig | None = None) -> Path:
    out = out or directory / "report.html"
    if out.is_dir():
        raise ConfigError(f"-o: '{out}' is a directory; name the file to write")
    try:  # a missing folder is made, as `results plot -o` and `results export -o` make theirs
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"-o: '{out.parent}' exists and is not a directory") from None
    return atomic_write_text(out, build_report(directory, carbon))
