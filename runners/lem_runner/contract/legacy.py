"""Reading result.json files written before schema 1.2: 1.0 (and the 0.x drafts), whose top-level figures mixed
spans, and 1.1, which held some figures twice. Each step upgrades one version to the next, so a 1.0 file goes through
both; the file's own schema_version is kept.

1.0 -> 1.1. In 1.0 (and the 0.x drafts) ``n_requests``, ``input_tokens``, ``output_tokens``, ``total_tokens`` and
``total_flops`` covered the whole run, ``total_energy_j``, ``total_inference_time_sec`` and ``avg_tokens_per_second``
the headline window, ``energy.per_device_j`` the total window, and adjusted energy was floored at 0. The upgrade moves
the whole-run counts to ``whole_run``, takes the headline output tokens from the headline window's figures, renames
``avg_tokens_per_second`` to ``output_tokens_per_second``, recomputes the signed adjusted energy where the baseline is
known, and drops what the old file cannot say about the headline window (FLOPs and per-device energy of a steady_state
or windowed headline) rather than mislabel it.

1.1 -> 1.2 (one field per figure, seconds in ``_s``): ``total_inference_time_sec`` -> ``inference_time_s``,
``model_load_sec`` -> ``model_load_s``, ``avg_energy_per_token_j`` -> ``energy_per_token_j``,
``avg_energy_per_token_adjusted_j`` -> ``adjusted_energy_per_token_j``, ``energy.adjusted_energy_j`` ->
``adjusted_energy_j``, ``energy.sampler`` -> ``energy.source``; dropped as copies: ``energy.total_energy_j`` (=
``total_energy_j``), ``energy.per_device_j`` (= ``energy.devices[].energy_j``), ``total_flops`` (=
``windows[measurement_methodology].flops``), ``whole_run.flops`` (= ``flops.total``), ``flops_method`` (=
``flops.method``), ``warmup_batches`` (= ``warmup.batches``).
"""

from __future__ import annotations

from typing import Any

#: result schema versions whose top-level figures mixed spans
MIXED_SPAN_VERSIONS = ("0.1", "1.0")
#: every result schema version read by upgrading it
OLDER_VERSIONS = (*MIXED_SPAN_VERSIONS, "1.1")

#: 1.1 -> 1.2 renames at the top level
_RENAMED_1_2 = {"total_inference_time_sec": "inference_time_s", "model_load_sec": "model_load_s",
                "avg_energy_per_token_j": "energy_per_token_j",
                "avg_energy_per_token_adjusted_j": "adjusted_energy_per_token_j"}


def upgrade_result(data: dict[str, Any]) -> dict[str, Any]:
    """An older result's fields in today's (1.2) shape; the file's own schema_version is kept."""
    if data.get("schema_version") in MIXED_SPAN_VERSIONS:
        data = upgrade_1_0(data)
    return upgrade_1_1(data)


def upgrade_1_1(data: dict[str, Any]) -> dict[str, Any]:
    """A 1.1 result's fields in the 1.2 shape: renamed to one name each, copies dropped."""
    if "total_inference_time_sec" not in data and "warmup_batches" not in data:
        return data
    data = {_RENAMED_1_2.get(k, k): v for k, v in data.items()}
    energy = dict(data.get("energy") or {})
    if energy:
        if "sampler" in energy:
            energy["source"] = energy.pop("sampler")
        data.setdefault("adjusted_energy_j", energy.pop("adjusted_energy_j", None))
        raw = energy.pop("total_energy_j", None)
        data.setdefault("total_energy_j", raw)
        per_device = energy.pop("per_device_j", None)
        if not energy.get("devices") and per_device:
            energy["devices"] = [{"id": k, "energy_j": v} for k, v in per_device.items()]
        data["energy"] = energy
    mode = data.get("measurement_methodology", "total")
    windows = {k: dict(v) for k, v in (data.get("windows") or {}).items()}
    headline_flops = data.pop("total_flops", None)
    if mode in windows and windows[mode].get("flops") is None and headline_flops is not None:
        windows[mode]["flops"] = headline_flops
    data["windows"] = windows
    if isinstance(data.get("whole_run"), dict):
        data["whole_run"] = {k: v for k, v in data["whole_run"].items() if k != "flops"}
    flops_method = data.pop("flops_method", None)
    if isinstance(data.get("flops"), dict) and not data["flops"].get("method") and flops_method:
        data["flops"] = {**data["flops"], "method": flops_method}
    batches = data.pop("warmup_batches", 0)
    if data.get("warmup") is None:
        data["warmup"] = {"mode": "fixed", "batches": batches, "stop_reason": "not recorded (the result's schema "
                          f"{data.get('schema_version')} kept only the count)"}
    return data


def upgrade_1_0(data: dict[str, Any]) -> dict[str, Any]:
    """A 1.0 (or 0.1) result's fields in the 1.1 shape."""
    if "whole_run" in data or "avg_tokens_per_second" not in data:
        return data
    data = dict(data)
    mode = data.get("measurement_methodology", "total")
    windows = {k: dict(v) for k, v in (data.get("windows") or {}).items()}
    energy = dict(data.get("energy") or {})
    baseline_w = (energy.get("baseline") or {}).get("power_w")
    for w in windows.values():  # 1.0 floored adjusted energy at 0: recompute it signed where it can be
        if w.get("energy_j") is not None and baseline_w is not None:
            w["adjusted_energy_j"] = w["energy_j"] - baseline_w * w.get("duration_s", 0.0)
            tokens = w.get("output_tokens") or 0
            w["adjusted_energy_per_token_j"] = w["adjusted_energy_j"] / tokens if tokens else None
    head = windows.get(mode)
    total_flops = data.pop("total_flops", None)
    run_output = data.get("output_tokens", 0)
    data["whole_run"] = {
        "n_requests": data.pop("n_requests", 0),
        "input_tokens": data.pop("input_tokens", 0),
        "output_tokens": run_output,
        "total_tokens": data.pop("total_tokens", 0),
        "duration_s": (windows.get("total") or {}).get("duration_s", data.get("total_inference_time_sec", 0.0)),
        "flops": total_flops,
    }
    data["output_tokens"] = head["output_tokens"] if head else run_output
    data["output_tokens_per_second"] = data.pop("avg_tokens_per_second")
    data["total_flops"] = total_flops if mode == "total" else None
    if mode != "total":
        energy["per_device_j"] = None
        energy["devices"] = [{**d, "energy_j": None} for d in energy.get("devices") or []]
    if head is not None and energy:
        energy["adjusted_energy_j"] = head.get("adjusted_energy_j")
        data["avg_energy_per_token_adjusted_j"] = head.get("adjusted_energy_per_token_j")
    if energy:
        data["energy"] = energy
    data["windows"] = windows
    return data
