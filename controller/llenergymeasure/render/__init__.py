"""Everything lem shows on a terminal, in one place: the console (console), number and latency formatting (text),
the energy block (energy), live progress of a run or a study (progress), the summary after ``lem run`` (summary),
``lem results show`` of an experiment (experiment) or a study (study), ``compare`` (compare) and ``list`` (listing).
The CLI commands call these; the figures they show come from the result and the catalogue (results/metrics.py)."""

from llenergymeasure.render.console import make_console

__all__ = ["make_console"]
