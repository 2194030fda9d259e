"""Emissions from measured energy, the way policy readers ask for them: grams of CO2-equivalent =
energy (J) / 3.6e6 (J per kWh) x PUE x grid intensity (gCO2e/kWh).

The inputs come from the experiment's ``carbon:`` section (recorded in its result's config) or, when reading results,
from ``--grid-intensity`` / ``--pue`` (which replace the recorded ones, so the figure always names the inputs it
used). Energy that was not measured gives null emissions with the reason; nothing is ever estimated from TDP.

Emissions cover exactly what the energy covers (``energy_scope``): the GPUs alone for NVML, the CPU package for RAPL
— never host DRAM or the rest of the server; PUE scales that energy for the facility, it does not add the server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from lem_runner.contract import ExperimentResult
from lem_runner.contract.config import CarbonConfig
from lem_runner.contract.energy import energy_scope as source_scope
from pydantic import ValidationError

from llenergymeasure.errors import ConfigError
from llenergymeasure.results.discover import Experiment

J_PER_KWH = 3.6e6


def emissions_g(energy_j: float | None, carbon: CarbonConfig | None) -> float | None:
    """gCO2e for ``energy_j`` joules; null when the energy or the carbon inputs are missing."""
    if energy_j is None or carbon is None:
        return None
    return energy_j / J_PER_KWH * carbon.pue * carbon.grid_intensity_g_per_kwh


def result_emissions_g(r: ExperimentResult) -> float | None:
    """The run's emissions over its measurement window (raw energy, idle power included: the grid supplied it)."""
    return emissions_g(r.total_energy_j, r.config.carbon)


def energy_scope(r: ExperimentResult) -> str | None:
    """What the run's energy, and so its emissions, cover: as the result recorded it, else (a result from before
    the field) from its energy source."""
    return r.energy.scope or source_scope(r.energy.source)


def emissions_per_token_g(r: ExperimentResult) -> float | None:
    g = result_emissions_g(r)
    return None if g is None or not r.output_tokens else g / r.output_tokens


def not_measured_reason(r: ExperimentResult) -> str:
    """Why a run has no emissions figure, in words."""
    if r.config.carbon is None:
        return "not computed (no carbon settings: carbon: in the config, or --grid-intensity)"
    return f"not measured (energy is null: {r.energy.unavailable_reason or 'no reason recorded'})"


def carbon_option(grid_intensity: float | None, pue: float | None) -> CarbonConfig | None:
    """The ``--grid-intensity`` / ``--pue`` flags as carbon settings; None when no grid intensity is given."""
    if grid_intensity is None:
        if pue is not None:
            raise ConfigError("--pue: give --grid-intensity too (gCO2e/kWh); PUE alone gives no emissions")
        return None
    try:
        return CarbonConfig(grid_intensity_g_per_kwh=grid_intensity, pue=1.0 if pue is None else pue)
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = "--grid-intensity" if err["loc"][0] == "grid_intensity_g_per_kwh" else "--pue"
        raise ConfigError(f"{flag}: {err['msg']}") from None


def with_carbon(experiments: Sequence[Experiment], carbon: CarbonConfig | None) -> list[Experiment]:
    """The experiments with ``carbon`` as their recorded carbon settings (unchanged when ``carbon`` is None)."""
    if carbon is None:
        return list(experiments)
    out = []
    for e in experiments:
        result = e.result
        if result is not None:
            result = result.model_copy(update={"config": result.config.model_copy(update={"carbon": carbon})})
        config = e.config.model_copy(update={"carbon": carbon}) if e.config is not None else None
        out.append(replace(e, result=result, config=config))
    return out


def describe_carbon(carbon: CarbonConfig | None) -> str:
    if carbon is None:
        return "no carbon settings"
    return f"{carbon.grid_intensity_g_per_kwh:g} gCO2e/kWh × PUE {carbon.pue:g}"
