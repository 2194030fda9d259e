"""Loading, overriding and checking experiment configs."""

from llenergymeasure.config.loader import apply_overrides, load_config, parse_config

__all__ = ["apply_overrides", "load_config", "parse_config"]
