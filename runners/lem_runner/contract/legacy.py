"""Reading result.json files written before schema 1.1, when the top-level figures mixed spans.

In 1.0 (and the 0.x drafts) ``n_requests``, ``input_tokens``, ``output_tokens``, ``total_tokens`` and ``total_flops``
covered the whole run, ``total_energy_j``, ``total_inference_time_sec`` and ``avg_tokens_per_second`` the headline
window, ``energy.per_device_j`` the total window, and adjusted energy was floored at 0. The upgrade moves the
whole-run counts to ``whole_run``, takes the headline output tokens from the headline window's figures, renames
``avg_tokens_per_second`` to ``output_tokens_per_second``, recomputes the signed adjusted energy where the baseline is
known, and drops what the old file cannot say about the headline window (FLOPs and per-device energy of a
steady_state or windowed headline) rather than mislabel it.
"""

from __future__ import annotations

from typing import Any

#: result schema versions whose top-level figures mixed spans
MIXED_SPAN_VERSIONS = ("0.1", "1.0")


def upgrade_result(data: dict[str, Any]) -> dict[str, Any]:
    """A 1.0 (or 0.1) result's fields in the 1.1 shape; the file's own schema_version is kept."""
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
    if head is not None and energy:
        energy["adjusted_energy_j"] = head.get("adjusted_energy_j")
        data["avg_energy_per_token_adjusted_j"] = head.get("adjusted_energy_per_token_j")
    if energy:
        data["energy"] = energy
    data["windows"] = windows
    return data
