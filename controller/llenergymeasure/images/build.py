"""Build a backend's runner image from images/<backend>/Dockerfile with the docker SDK.

The build context is assembled in a temp folder: the Dockerfile, the runner package (nothing of the controller),
constraints.txt pinning the runner's libraries to the versions installed on the host (so an isolated run uses the
same stack as a local one), optional local wheels (the host's CPU torch for the CPU variant), and an optional CA
bundle for pip behind a TLS-intercepting mirror. Builds use host networking, since pip needs the index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from lem_runner.contract import BackendSpec, backend_spec, contract_fingerprint

from llenergymeasure.errors import ConfigError, SetupError
from llenergymeasure.host.cache import cache_root
from llenergymeasure.images.catalog import (
    BACKENDS,
    BASE_IMAGE_CPU,
    CPU_VARIANTS,
    GPU_VARIANTS,
    LABEL_BACKEND,
    LABEL_BACKEND_VERSION,
    LABEL_CONTRACT,
    LABEL_MANAGED,
    LABEL_VARIANT,
    LABEL_VERSION,
    bare_version,
    image_tag,
)
from llenergymeasure.version import __version__

#: builds the CPU variants' base image when it is missing (debootstrap + docker import; no registry needed)
BASE_IMAGE_SCRIPT = Path("docker") / "build-base-image.sh"


@dataclass(frozen=True)
class BuildResult:
    tag: str
    image_id: str
    size_bytes: int
    seconds: float


def source_root() -> Path:
    """The source tree holding images/ and runners/ (lem images build works from a clone or an editable install)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "images").is_dir() and (parent / "runners" / "lem_runner").is_dir():
            return parent
    raise SetupError("lem images build needs the llenergymeasure source tree (images/ and runners/): run it from a clone")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _pip_cert() -> Path | None:
    """The CA bundle host pip trusts, if it was configured with one."""
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if os.environ.get(var) and Path(os.environ[var]).is_file():
            return Path(os.environ[var])
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.cert"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None
    return path if path and path.is_file() else None


def _pip_index() -> str | None:
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    out = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                         capture_output=True, text=True, timeout=30)
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _torch_wheel(version: str, cache: Path) -> Path:
    """The host's torch wheel (pip download copies it from a local find-links folder when one has it)."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"torch-{version.replace('+', '*')}*.whl"))
    if found:
        return found[-1]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache), f"torch=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(cache.glob("torch-*.whl"))
    if proc.returncode != 0 or not found:
        raise SetupError(f"could not fetch the torch {version} wheel for the CPU image: {proc.stderr.strip()[-300:]}")
    return found[-1]


def local_wheel_dir() -> Path:
    """Where source-built wheels wait for image builds: $LEM_WHEEL_DIR, else ~/.cache/lem/wheels (the Makefile's)."""
    return Path(os.environ.get("LEM_WHEEL_DIR") or Path.home() / ".cache" / "lem" / "wheels")


def _link_local_wheels(spec: BackendSpec, wheels: Path) -> None:
    """The locally built wheels the spec's image installs (``image.local_wheels``), into the context's wheels/."""
    source = local_wheel_dir()
    for pattern in spec.image.local_wheels:
        found = sorted(source.glob(pattern))
        if not found:
            raise SetupError(f"backend {spec.name}: its image installs a locally built wheel {pattern}, and "
                             f"{source} has none (build it there first: see the Makefile; LEM_WHEEL_DIR moves it)")
        try:
            os.link(found[-1], wheels / found[-1].name)
        except OSError:
            shutil.copyfile(found[-1], wheels / found[-1].name)


def runner_requirements(root: Path, extra: str) -> list[str]:
    """The runner's dependencies plus one extra's, read from runners/pyproject.toml (the one list there is)."""
    import tomllib

    project = tomllib.loads((root / "runners" / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    if extra not in extras:
        raise SetupError(f"runners/pyproject.toml has no extra '{extra}' (a backend spec's image.extras names it)")
    return list(project["dependencies"]) + list(extras[extra])


def dockerfile(spec: BackendSpec, root: Path) -> Path:
    """The backend's Dockerfile: its spec's image.dockerfile, else images/<name>/Dockerfile."""
    path = Path(spec.image.dockerfile) if spec.image.dockerfile else root / "images" / spec.name / "Dockerfile"
    if not path.is_file():
        raise SetupError(f"backend {spec.name}: no Dockerfile at {path}")
    return path


def base_image_present(client, image: str = BASE_IMAGE_CPU) -> bool:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_base_image(client, image: str = BASE_IMAGE_CPU, on_line: Callable[[str], None] = lambda _l: None,
                      script: Path | None = None) -> bool:
    """Build ``image`` with docker/build-base-image.sh when the engine lacks it; True when it was built now."""
    if base_image_present(client, image):
        return False
    script = script or source_root() / BASE_IMAGE_SCRIPT
    on_line(f"base image {image} missing: building it with {script}")
    proc = subprocess.Popen(["bash", str(script), image], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        on_line(line.rstrip())
        tail = (tail + [line.rstrip()])[-5:]
    if proc.wait() != 0 or not base_image_present(client, image):
        raise SetupError(f"building the base image {image} with {script} failed (exit {proc.returncode}): "
                         + " | ".join(tail))
    return True


def assemble_context(backend: str, cpu: bool, ctx: Path, ca_bundle: Path | None, wheel_cache: Path) -> dict[str, str]:
    """Fill ``ctx`` with everything the Dockerfile COPYs; return the labels the image gets."""
    root = source_root()
    spec = backend_spec(backend)
    shutil.copyfile(dockerfile(spec, root), ctx / "Dockerfile")
    shutil.copytree(root / "runners", ctx / "runners",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.pyc"))
    (ctx / "wheels").mkdir()
    (ctx / "certs").mkdir()
    if ca_bundle is not None:
        shutil.copyfile(ca_bundle, ctx / "certs" / "ca-bundle.pem")
    pins = {d: v for d in spec.image.pinned if (v := _version(d))}
    if cpu:
        torch = _version("torch")
        if torch is None:
            raise SetupError("CPU images reuse the host's CPU torch wheel, which is not installed: pip install torch==2.13.0")
        pins["torch"] = torch
        wheel = _torch_wheel(torch, wheel_cache)
        try:
            os.link(wheel, ctx / "wheels" / wheel.name)
        except OSError:
            shutil.copyfile(wheel, ctx / "wheels" / wheel.name)
    _link_local_wheels(spec, ctx / "wheels")
    (ctx / "constraints.txt").write_text("".join(f"{d}=={v}\n" for d, v in sorted(pins.items())))
    requirements = runner_requirements(root, spec.image.extras["cpu" if cpu else "gpu"])
    (ctx / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
    library = spec.image.library
    # the backend's version: the host's pin, else (CPU variants install it) the requirement as the runner declares it
    declared = next((r for r in requirements if r.startswith(library)), None) if cpu else None
    return {
        LABEL_MANAGED: "true",
        LABEL_VERSION: __version__,
        LABEL_CONTRACT: contract_fingerprint(),
        LABEL_BACKEND: backend,
        LABEL_BACKEND_VERSION: pins.get(library) or bare_version(declared) or "from base image",
        LABEL_VARIANT: "cpu" if cpu else "gpu",
    }


def build_image(
    client,
    backend: str,
    cpu: bool,
    base_image: str | None = None,
    ca_bundle: Path | None = None,
    wheel_cache: Path | None = None,
    on_line: Callable[[str], None] = lambda _l: None,
) -> BuildResult:
    """Build ``llenergymeasure/<backend>:<version>[-cpu]``; stream build output lines to ``on_line``."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend: unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if cpu and backend not in CPU_VARIANTS:
        raise ConfigError(f"backend: '{backend}' has no CPU image variant yet (CPU variants: {', '.join(CPU_VARIANTS)})")
    if not cpu and backend not in GPU_VARIANTS:
        raise ConfigError(f"backend: '{backend}' has no GPU image variant (build it with --cpu)")
    import docker.errors

    base = base_image or (BASE_IMAGE_CPU if cpu else None)
    if base == BASE_IMAGE_CPU:
        ensure_base_image(client, BASE_IMAGE_CPU, on_line)
    tag = image_tag(backend, cpu)
    try:
        previous = client.images.get(tag).id
    except docker.errors.ImageNotFound:
        previous = None
    buildargs = dict(backend_spec(backend).image.cpu_buildargs) if cpu else {}
    if base:
        buildargs["BASE_IMAGE"] = base
    index = _pip_index()
    if index:
        buildargs["LEM_PIP_INDEX_URL"] = index
    t0 = time.perf_counter()
    cache_root().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-", dir=cache_root()) as tmp:
        ctx = Path(tmp)
        labels = assemble_context(backend, cpu, ctx, ca_bundle or _pip_cert(), wheel_cache or cache_root() / "wheels")
        image_id = None
        for chunk in client.api.build(path=str(ctx), tag=tag, buildargs=buildargs, labels=labels, network_mode="host",
                                      rm=True, forcerm=True, decode=True):
            if "error" in chunk:
                raise SetupError(f"building {tag} failed: {chunk['error'].strip()}")
            if "stream" in chunk and chunk["stream"].strip():
                on_line(chunk["stream"].rstrip())
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
    image = client.images.get(image_id or tag)
    if previous and previous != image.id:
        try:  # the image this build replaced is now untagged: do not leave gigabytes behind on every rebuild
            client.images.remove(previous)
        except docker.errors.APIError:
            pass  # still used by a container, or shares a tag: leave it
    return BuildResult(tag=tag, image_id=image.id, size_bytes=int(image.attrs.get("Size", 0)),
                       seconds=time.perf_counter() - t0)
