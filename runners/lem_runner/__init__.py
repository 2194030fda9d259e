"""lem_runner — the in-container half of llenergymeasure.

It measures one experiment and writes ``result.json``. It never imports the controller; the controller sees it only
through :mod:`lem_runner.contract`.
"""

__version__ = "0.1.0"
