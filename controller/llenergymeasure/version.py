"""lem's version, in a module of its own so that any layer can read it without importing the API module
(llenergymeasure/__init__.py, which sits above them all)."""

__version__ = "0.1.0"
