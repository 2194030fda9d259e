"""Where a model named in a config lives on the host, and the embedded default model."""

from llenergymeasure.models.resolve import ResolvedModel, resolve_model

__all__ = ["ResolvedModel", "resolve_model"]
