"""The runner's scenarios are one interface: every value ``scenario`` takes has one, and both end in the shared
result step (the config as written, the engine handed back). The runs themselves are measured for real in
tests/integration (test_cli_run.py offline, test_serving_pytorch.py serving)."""

from __future__ import annotations

from typing import get_args

from lem_runner.contract import ExperimentConfig
from lem_runner.scenarios import SCENARIOS, Scenario


def test_every_scenario_the_config_accepts_has_an_implementation():
    accepted = set(get_args(ExperimentConfig.model_fields["scenario"].annotation))
    assert set(SCENARIOS) == accepted
    assert all(isinstance(s, Scenario) for s in SCENARIOS.values())
    assert all(name == s.name for name, s in SCENARIOS.items())
