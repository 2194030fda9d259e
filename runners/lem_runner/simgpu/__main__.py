"""``python -m lem_runner.simgpu show|reset SCENARIO``: the settings a simulated GPU holds now (what a killed sweep
left), or clear them all (as a driver reload would)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from lem_runner.simgpu.scenario import ScenarioError, load_scenario
from lem_runner.simgpu.state import SETTINGS, State


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lem_runner.simgpu", description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["show", "reset"])
    ap.add_argument("scenario")
    args = ap.parse_args(argv)
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(exc, file=sys.stderr)
        return 2
    state = State(scenario.state_file)
    if args.action == "reset":
        for device in scenario.devices:
            history = state.device(device.uuid)["limit_history"]
            keep = [*history, [time.time(), device.power_limit_default_w]] if history else []
            state.update(device.uuid, **{**SETTINGS, "limit_history": keep})
    print(json.dumps(state.changed_devices(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
