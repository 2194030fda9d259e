"""`lem images build|list`: the per-backend runner images."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from llenergymeasure.host.docker_engine import docker_client
from llenergymeasure.images.build import base_image_present, build_image, ensure_base_image
from llenergymeasure.images.catalog import (
    BACKENDS,
    BASE_IMAGE_CPU,
    build_command,
    image_tag,
    image_variants,
    list_images,
)
from llenergymeasure.render.console import make_console

app = typer.Typer(help="Build and list runner images.", no_args_is_help=True)


@app.command("build")
def build(
    backends: list[str] = typer.Argument(None, help=f"Backends to build ({', '.join(BACKENDS)}); default {BACKENDS[0]}."),
    cpu: bool = typer.Option(False, "--cpu", help="CPU variant on the local debootstrap base (no registry needed)."),
    base_image: str | None = typer.Option(None, "--base-image", help="Override the Dockerfile's BASE_IMAGE."),
    ca_bundle: Path | None = typer.Option(None, "--ca-bundle", help="Extra CA bundle for pip inside the build."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the build output."),
) -> None:
    """Build runner images, labelled with lem's version and contract fingerprint."""
    console = make_console()
    client = docker_client()
    show = (lambda line: console.print(f"  {line}", markup=False)) if verbose else (lambda _l: None)
    if cpu and base_image is None and not base_image_present(client):
        console.print(f"base image {BASE_IMAGE_CPU} missing: building it (debootstrap, a few minutes) …")
        ensure_base_image(client, BASE_IMAGE_CPU, show)
    for backend in backends or [BACKENDS[0]]:
        console.print(f"building {backend}{' (cpu)' if cpu else ''} …")
        res = build_image(client, backend, cpu, base_image=base_image, ca_bundle=ca_bundle, on_line=show)
        console.print(f"built {res.tag} ({res.image_id[7:19]}) · {res.size_bytes / 1e9:.2f} GB · {res.seconds:.0f} s")


@app.command("list")
def list_cmd() -> None:
    """Images lem built, with their contract fingerprints, then every known backend's image not built yet."""
    console = make_console()
    table = Table("image", "backend", "variant", "backend version", "contract", "size")
    images = list_images(docker_client())
    for img in images:
        mark = "" if img.matches_contract else " [red](stale)[/]"
        table.add_row(escape(img.tag), escape(img.backend or "?"), escape(img.variant or "?"),
                      escape(img.backend_version or "?"), f"{escape(img.contract or '?')}{mark}",
                      f"{img.size_bytes / 1e9:.2f} GB")
    tags = {img.tag for img in images}
    for backend in BACKENDS:
        for cpu in image_variants(backend, cpu_first=False):
            if image_tag(backend, cpu) not in tags:
                table.add_row(escape(image_tag(backend, cpu)), escape(backend), "cpu" if cpu else "gpu", "",
                              f"[dim]not built: {escape(build_command(backend, cpu))}[/]", "")
    console.print(table)
