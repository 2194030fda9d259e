"""`lem config validate|show|schema|init|reference`: check a config without running it, print it fully resolved,
write the JSON Schemas editors use, write a commented starter file, or regenerate the field reference."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from llenergymeasure.config import load_config
from llenergymeasure.errors import ConfigError

app = typer.Typer(help="Check, show, document and start experiment configs.", no_args_is_help=True)


@app.command("validate")
def validate(
    path: Path = typer.Argument(..., help="Config file."),
    allow_skipped: bool = typer.Option(False, "--allow-skipped", help="Study: accept invalid points (run skips them)."),
    isolated: bool = typer.Option(False, "--isolated", help="As `lem run --isolated` would take it (each run in its "
                                  "backend's container)."),
) -> None:
    """Exit 0 if the config (or study file) is valid, as `lem run` would take it; otherwise one line naming every
    problem's field, exit 2."""
    from llenergymeasure.config.host_checks import plan_notes
    from llenergymeasure.plan import RunOptions, StudyPlan, plan

    # the path `lem run` takes
    planned = plan(path, RunOptions(allow_skipped=allow_skipped, dry_run=True, isolated=isolated))
    if isinstance(planned, StudyPlan):
        study, expansion = planned.study, planned.expansion
        skipped = f"; {len(expansion.skipped)} skipped: {'; '.join(expansion.skipped)}" if expansion.skipped else ""
        notes = {_device_note(p.config) for p in expansion.points} - {None}
        typer.echo(f"{path}: valid study ({study.name}: {len(expansion.points)} point(s) x {study.n_cycles} "
                   f"cycle(s){skipped})")
        for line in [*(f"note: {n}" for n in sorted(notes)), *plan_notes([p.config for p in expansion.points])]:
            typer.echo(line)
        return
    cfg = planned.config
    note = _device_note(cfg)
    typer.echo(f"{path}: valid ({cfg.experiment_name}, backend {cfg.backend}, model {cfg.model})")
    for line in [*([f"note: {note}"] if note else []), *plan_notes([cfg])]:
        typer.echo(line)


def _device_note(cfg) -> str | None:
    """The gpu: section checked against this host's GPUs (as `lem run` would, before changing anything)."""
    if not cfg.gpu.requested:
        return None
    from llenergymeasure.gpustate.apply import check_config
    from llenergymeasure.host.gpu_lock import lock_ids

    return check_config(cfg.gpu, lock_ids(cfg))


@app.command("show")
def show(path: Path = typer.Argument(..., help="Config or study file.")) -> None:
    """Print the config with every default filled in, as YAML (only the selected backend's section); for a study,
    each expanded point in turn."""
    from llenergymeasure.config.loader import read_config_file
    from llenergymeasure.study import expand_study, is_study, load_study

    if not is_study(read_config_file(path)):
        typer.echo(_as_yaml(load_config(path)))
        return
    study = load_study(path)
    expansion = expand_study(study, str(path))
    typer.echo(f"# {study.name}: {len(expansion.points)} point(s) x {study.n_cycles} cycle(s), order {study.order}")
    for reason in expansion.skipped:
        typer.echo(f"# skipped: {reason}")
    for i, point in enumerate(expansion.points, start=1):
        typer.echo(f"---\n# point {i}: {point.label}\n{_as_yaml(point.config)}")


def _as_yaml(cfg) -> str:
    """The resolved config (it holds its own backend's section only); the ``slurm:`` and ``serving:`` sections
    only where the experiment uses them (runner slurm, scenario serving), else a comment saying they are left out."""
    data = cfg.model_dump(mode="json")
    unused = [name for name, used in (("slurm", cfg.runner == "slurm"), ("serving", cfg.scenario == "serving"))
              if not used and name in data]
    for name in unused:
        del data[name]
    text = yaml.safe_dump(data, sort_keys=False).rstrip()
    if unused:
        text += (f"\n# not shown, unused here (runner {cfg.runner}, scenario {cfg.scenario}): "
                 + ", ".join(f"{n}:" for n in unused))
    return text


@app.command("schema")
def schema(output: Path = typer.Option(Path("schemas"), "--output", "-o", help="Folder to write into.")) -> None:
    """Write JSON Schemas of the experiment and study configs (and one accepting either) for editor completion."""
    from llenergymeasure.docs.schema import write_schemas
    from llenergymeasure.results.output_path import resolve_output

    for path in write_schemas(resolve_output(output)):
        typer.echo(f"wrote {path}")


@app.command("init")
def init(
    path: Path | None = typer.Argument(None, help="File to write (default: lem.yaml; study.yaml with --study, serving.yaml with --serving)."),
    study: bool = typer.Option(False, "--study", help="A study (sweep with cycles) instead of one experiment."),
    serving: bool = typer.Option(False, "--serving", help="A serving experiment (a server under load)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented starter config that validates as it is."""
    from lem_runner.contract.atomic import atomic_write_text

    from llenergymeasure.docs.starter import EXPERIMENT, SERVING, STUDY

    path = path or Path("study.yaml" if study else "serving.yaml" if serving else "lem.yaml")
    if path.exists() and not force:
        raise ConfigError(f"{path}: already exists (use --force to overwrite)")
    if not path.parent.is_dir():
        raise ConfigError(f"{path}: folder '{path.parent}' does not exist")
    if study and serving:
        raise ConfigError("--study and --serving: pick one")
    atomic_write_text(path, STUDY if study else SERVING if serving else EXPERIMENT)
    typer.echo(f"wrote {path}: edit it, then `lem config validate {path}` and `lem run {path}`")


@app.command("reference")
def reference(
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default: print)."),
    columns: bool = typer.Option(False, "--columns", help="The exported results columns instead of config fields."),
) -> None:
    """The field reference generated from the models (docs/config-reference.md, docs/results-columns.md)."""
    from lem_runner.contract.atomic import atomic_write_text

    from llenergymeasure.docs.reference import reference_markdown
    from llenergymeasure.results.columns import columns_markdown

    text = columns_markdown() if columns else reference_markdown()
    if output is None:
        typer.echo(text, nl=False)
        return
    from llenergymeasure.results.output_path import resolve_output

    output = resolve_output(output, folder=False)
    output.parent.mkdir(parents=True, exist_ok=True)  # as `results export/plot -o` make theirs
    atomic_write_text(output, text)
    typer.echo(f"wrote {output}")
