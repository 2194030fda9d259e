"""The summary ``lem run`` prints when an experiment has finished: what ran, its throughput, latency, energy block,
FLOPs, timing and where the result is."""

from __future__ import annotations

from pathlib import Path

from lem_runner.contract import ExperimentResult
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llenergymeasure.render.energy import energy_rows, phase_row, serving_rows
from llenergymeasure.render.text import fewer_prompts, latency

#: what the headline window covers, in words
SPANS = {"total": "the whole measured run", "steady_state": "the steady-state spans", "windowed": "the fixed window"}


def batch_text(result: ExperimentResult) -> str:
    """'batch 8 (vllm.max_num_seqs)', with '; 4 prompt(s), so at most 4 at once' when the prompts do not fill it;
    'batch: the engine's default (...)' when the engine did not report it."""
    knob = result.batch_knob or result.config.spec.batch_knob
    if knob is None:
        return "no batch knob"
    size = result.batch_size if result.batch_size is not None else result.backend_details.get("batch_size")
    if size is None:
        return f"batch: the engine's default ({knob} unset, not reported)"
    return f"batch {size} ({knob}{fewer_prompts(size, result.config.n_prompts, result.config.scenario)})"


def render_summary(console: Console, result: ExperimentResult, exp_dir: Path) -> None:
    d = result.backend_details
    table = Table(title=f"Result · {result.experiment_id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("model", escape(result.config.model))
    table.add_row("backend", f"{result.config.backend} · {d.get('device')} · {d.get('dtype')} · {batch_text(result)}")
    run = result.whole_run
    table.add_row("whole run", f"{run.n_requests} requests · tokens in {run.input_tokens} / out {run.output_tokens} "
                               f"in {run.duration_s:.2f} s")
    table.add_row("throughput", f"{result.output_tokens_per_second:.1f} output tok/s over "
                                f"{SPANS[result.measurement_methodology]} ({result.output_tokens} output tokens in "
                                f"{result.inference_time_s:.2f} s, methodology "
                                f"'{result.measurement_methodology}')")
    table.add_row("TTFT", latency(result.ttft))
    table.add_row("ITL", latency(result.itl))
    for row in serving_rows(result):
        table.add_row(*row)
    for row in energy_rows(result):
        table.add_row(*row)
    if (phases := phase_row(result)) is not None:
        table.add_row(*phases)
    if result.flops is not None:
        f = result.flops
        per_s = f" · achieved {f.achieved_flops_per_s:.3e} FLOP/s" if f.achieved_flops_per_s else ""
        table.add_row("FLOPs", f"{f.total:.3e} (prefill {f.prefill:.3e} · decode {f.decode:.3e}){per_s}")
    warmup = f"{result.warmup.batches} batch(es), {result.warmup.stop_reason}"
    table.add_row("timing", f"model load {result.model_load_s:.1f} s · warmup {escape(warmup)}, excluded")
    image = result.environment.image
    where = f"container from image {image.removeprefix('sha256:')[:12]}" if image else "local process"
    alloc = result.environment.allocation
    if alloc is not None:
        where = f"Slurm job {alloc.job_id} on {alloc.node or '?'} · {where}"
    table.add_row("ran in", where)
    table.add_row("result", str(exp_dir / "result.json"))
    for w in result.warnings:
        table.add_row("[yellow]warning[/]", escape(w))
    console.print(table)
