"""Resolve a config's ``model`` to a host folder (to load from, or mount read-only into a container) or a hub id
the runner may download. Checked before any runner starts, so a missing model is a config error (exit 2). A serving
run against a user's endpoint needs no local model (the server holds it; counts come from its ``usage``), except for
exact input lengths (``serving.input_tokens``), which are token ids drawn from the model's vocabulary."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lem_runner.contract import ExperimentConfig
from lem_runner.contract.config import EMBEDDED_DEFAULT_MODEL

from llenergymeasure.errors import ConfigError

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclass(frozen=True)
class ResolvedModel:
    """Where the runner finds the model.

    ``mount_root`` is the host folder a container must see (a hub cache repo folder, whose snapshot files are
    symlinks into its blobs/), and ``relative`` the model folder inside it. ``hub_id`` is set when the runner
    downloads the model itself.
    """

    reference: str
    mount_root: Path | None = None
    relative: str = ""
    hub_id: str | None = None

    @property
    def host_path(self) -> str:
        if self.mount_root is None:
            return self.hub_id or self.reference
        return str(self.mount_root / self.relative) if self.relative else str(self.mount_root)


def _hub_cache_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def resolve_model(config: ExperimentConfig) -> ResolvedModel:
    """The model's folder or hub id; ConfigError naming ``model`` for anything unusable, including a reference the
    filesystem or the hub client refuses outright (a name too long, a NUL byte, an invalid repo id)."""
    try:
        return _resolve(config)
    except ConfigError:
        raise
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:200]
        ref = config.model if len(config.model) <= 200 else config.model[:200] + "…"
        raise ConfigError(f"model: '{ref}' cannot be used ({reason})") from None


def _resolve_gguf(config: ExperimentConfig) -> ResolvedModel:
    """A backend that loads one GGUF file (its spec's ``model_format``): the embedded model's own GGUF, a ``.gguf``
    file, or a folder holding exactly one; mounted as its folder, the file inside it."""
    ref = config.model
    if ref == EMBEDDED_DEFAULT_MODEL:
        from llenergymeasure.models.embedded import _gguf_path

        path = _gguf_path()
    elif ref.startswith("embedded:"):
        raise ConfigError(f"model: unknown embedded model '{ref}' (the embedded one is '{EMBEDDED_DEFAULT_MODEL}')")
    else:
        path = Path(ref).expanduser()
        if path.is_dir():
            found = sorted(path.glob("*.gguf"))
            if len(found) != 1:
                raise ConfigError(f"model: the {config.backend} backend loads one GGUF file, and folder '{ref}' holds "
                                  f"{len(found)}; name the file")
            path = found[0]
        elif not path.is_file():
            raise ConfigError(f"model: the {config.backend} backend loads a local GGUF file, and '{ref}' is no file "
                              "or folder here")
        elif path.suffix != ".gguf":
            raise ConfigError(f"model: the {config.backend} backend loads a GGUF file, and '{ref}' is not a .gguf")
    path = path.resolve()
    return ResolvedModel(ref, mount_root=path.parent, relative=path.name)


def _resolve(config: ExperimentConfig) -> ResolvedModel:
    ref = config.model
    if config.spec.model_format == "gguf" and not (config.scenario == "serving" and config.serving.endpoint):
        return _resolve_gguf(config)
    if ref == EMBEDDED_DEFAULT_MODEL:
        from llenergymeasure.models.embedded import ensure_embedded_model

        return ResolvedModel(ref, mount_root=ensure_embedded_model())
    if ref.startswith("embedded:"):
        raise ConfigError(f"model: unknown embedded model '{ref}' (the embedded one is '{EMBEDDED_DEFAULT_MODEL}')")

    path = Path(ref).expanduser()
    looks_like_path = ref.startswith(("/", ".", "~")) or path.exists()
    endpoint = config.scenario == "serving" and config.serving.endpoint is not None
    local = looks_like_path and (path / "config.json").is_file()
    if endpoint and not local and not (not looks_like_path and _HUB_ID.match(ref) and _hub_cache_snapshot(ref)):
        # the user's server holds the model: lem needs its config.json only for exact token-id input lengths
        s = config.serving
        if s.arrival == "trace" or (s.input_tokens is not None and s.dataset is None):
            field = "serving.trace" if s.arrival == "trace" else "serving.input_tokens"
            raise ConfigError(f"{field}: exact input lengths are sent as token ids drawn from the model's "
                              f"vocabulary, read from its config.json, and model '{ref}' is not a local folder or "
                              "in the Hugging Face cache; give model as a local folder (or drop input_tokens: the "
                              "server's usage still counts every prompt token)")
        return ResolvedModel(ref)
    if looks_like_path:
        if not path.is_dir():
            raise ConfigError(f"model: folder '{ref}' does not exist")
        if not (path / "config.json").is_file():
            raise ConfigError(f"model: '{ref}' has no config.json, so it is not a transformers model folder")
        return ResolvedModel(ref, mount_root=path.resolve())

    if not _HUB_ID.match(ref):
        raise ConfigError(f"model: '{ref}' is neither an existing folder nor a hub id like 'org/name'")
    snapshot = _hub_cache_snapshot(ref)
    if snapshot is not None:
        repo_root = snapshot.parent.parent
        return ResolvedModel(ref, mount_root=repo_root, relative=str(snapshot.relative_to(repo_root)))
    if not config.allow_model_download:
        raise ConfigError(
            f"model: '{ref}' is not a local folder and not in the Hugging Face cache; "
            "set allow_model_download: true to let the runner download it"
        )
    return ResolvedModel(ref, hub_id=ref)
