"""`lem images build|list`: the per-backend runner images."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from llenergymeasure.host.docker_engine import docker_client
from llenergymeasure.images.build import build_image
from llenergymeasure.images.catalog import BACKENDS, list_images
from llenergymeasure.render.console import make_console

app = typer.Typer(help="Build and list runner images.", no_args_is_help=True)


@app.command("build")
def build(
    backends: list[str] = typer.Argument(None, help=f"Backends to build ({', '.join(BACKENDS)}); default pytorch."),
    cpu: bool = typer.Option(False, "--cpu", help="CPU variant on the local debootstrap base (no registry needed)."),
    base_image: str | None = typer.Option(None, "--base-image", help="Override the Dockerfile's BASE_IMAGE."),
    ca_bundle: Path | None = typer.Option(None, "--ca-bundle", help="Extra CA bundle for pip inside the build."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the build output."),
) -> None:
    """Build runner images, labelled with lem's version and contract fingerprint."""
    console = make_console()
    client = docker_client()
    for backend in backends or ["pytorch"]:
        console.print(f"building {backend}{' (cpu)' if cpu else ''} …")
        res = build_image(client, backend, cpu, base_image=base_image, ca_bundle=ca_bundle,
                          on_line=(lambda line: console.print(f"  {line}", markup=False)) if verbose else (lambda _l: None))
        console.print(f"built {res.tag} ({res.image_id[7:19]}) · {res.size_bytes / 1e9:.2f} GB · {res.seconds:.0f} s")


@app.command("list")
def list_cmd() -> None:
    """Images lem built, with their contract fingerprints."""
    console = make_console()
    table = Table("image", "backend", "variant", "backend version", "contract", "size")
    for img in list_images(docker_client()):
        mark = "" if img.matches_contract else " [red](stale)[/]"
        table.add_row(escape(img.tag), escape(img.backend or "?"), escape(img.variant or "?"),
                      escape(img.backend_version or "?"), f"{escape(img.contract or '?')}{mark}",
                      f"{img.size_bytes / 1e9:.2f} GB")
    console.print(table)
