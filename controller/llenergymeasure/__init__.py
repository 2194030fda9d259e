"""llenergymeasure — measure the energy and efficiency of LLM inference across backends.

The public Python API::

    import llenergymeasure as lem
    result = lem.run_experiment({"model": "/path/to/model", "n_prompts": 8})
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from lem_runner.contract import ExperimentConfig, ExperimentResult


def run_experiment(
    config: ExperimentConfig | dict[str, Any] | str | Path,
    output: str | Path = "results",
    isolated: bool = False,
) -> ExperimentResult:
    """Measure one experiment (a config object, a mapping, or a YAML/JSON file) and return its result.

    The result is also written to ``<output>/<experiment>/result.json``. Raises ConfigError (bad config) or RunFailed.
    """
    from lem_runner.contract import ExperimentConfig

    from llenergymeasure.config import load_config, parse_config
    from llenergymeasure.experiment import execute_experiment

    if isinstance(config, (str, Path)):
        config = load_config(config)
    elif not isinstance(config, ExperimentConfig):
        config = parse_config(config, "config")
    result, _ = execute_experiment(config, output=output, isolated=isolated)
    return result


__all__ = ["__version__", "run_experiment"]
