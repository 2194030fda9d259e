"""The energy block: how a result's energy reads, the same after ``lem run`` (short) and in ``lem results show``
(in full: emissions, per-device split, quality flags and warnings too). Raw and idle-adjusted energy are side by
side and labelled as such; a figure not measured says why."""

from __future__ import annotations

from lem_runner.contract import ExperimentResult
from lem_runner.contract.conversation import TEMPLATED
from rich.markup import escape

from llenergymeasure.render.text import figure, latency, slo_text
from llenergymeasure.results.carbon import (
    J_PER_KWH,
    describe_carbon,
    emissions_per_token_g,
    not_measured_reason,
    result_emissions_g,
)


def adjusted_reason(r: ExperimentResult) -> str:
    """Why a run has no idle-adjusted energy, in words."""
    if r.total_energy_j is None:
        return "energy not measured"
    return r.energy.baseline_unavailable_reason or "no idle baseline"


def energy_rows(r: ExperimentResult, full: bool = False) -> list[tuple[str, str]]:
    """(name, text) rows of the energy block; ``full`` adds what ``lem results show`` shows beyond the summary."""
    e = r.energy
    rows = [("source", escape(f"{e.source}" + (f" ({e.selected_because})" if e.selected_because else ""))),
            ("method", escape(e.method))]
    if r.total_energy_j is None:
        rows.append(("raw", f"null — {escape(e.unavailable_reason or 'no reason recorded')}"))
    else:
        rows.append(("raw", f"{figure(r.total_energy_j, 'J')} · {figure(r.energy_per_token_j, 'J/token')}"))
    if e.baseline is not None:
        b = e.baseline
        spread = f" ± {b.power_std_w:.3g} W" if b.power_std_w is not None else ""
        when = f", measured {b.measured_at:%Y-%m-%d %H:%M:%S}" if full else ""
        rows.append(("baseline", f"{b.power_w:.4g} W{spread} idle over {b.duration_s:.3g} s ({b.n_samples} samples, "
                                 f"{b.source}{when})"))
        if full and b.cache_check is not None:
            rows.append(("baseline cache", escape(f"{b.cache_check.outcome}: {b.cache_check.reason}")))
    elif e.baseline_unavailable_reason:
        rows.append(("baseline", f"none — {escape(e.baseline_unavailable_reason)}"))
    if r.adjusted_energy_j is None:
        rows.append(("idle-adjusted", f"not measured ({escape(adjusted_reason(r))})"))
    else:
        rows.append(("idle-adjusted", f"{figure(r.adjusted_energy_j, 'J')} · "
                                      f"{figure(r.adjusted_energy_per_token_j, 'J/token')}"))
    if full:
        g = result_emissions_g(r)
        if g is None:
            rows.append(("emissions", escape(not_measured_reason(r))))
        else:
            rows.append(("emissions", f"{g:.4g} g CO2e · {figure(emissions_per_token_g(r), 'g/token')} "
                                      f"({r.total_energy_j / J_PER_KWH:.4g} kWh × "
                                      f"{escape(describe_carbon(r.config.carbon))})"))
        if any(d.energy_j is not None for d in e.devices):
            rows.append(("per device", ", ".join(f"{d.id}: {d.energy_j:.4g} J" for d in e.devices
                                                 if d.energy_j is not None)))
    if e.integrated_energy_j is not None:
        diff = (f" ({e.counter_vs_integrated_rel_diff * 100:+.1f} % vs counter)"
                if e.counter_vs_integrated_rel_diff is not None else "")
        rows.append(("cross-check", f"sampled power integrated over the total window: {e.integrated_energy_j:.4g} J"
                                    f"{diff}"))
    if e.counter_update_period_ms is not None:
        rows.append(("counter", f"updates every {e.counter_update_period_ms:.3g} ms (measured) · "
                                f"{e.counter_resets} reset(s)"))
    if e.sample_hz:
        rows.append(("sampling", f"{e.sample_hz:g} Hz · {e.n_power_samples} samples in window"
                                 + (f" · sampler CPU {e.sampler_cpu_s:.3g} s" if e.sampler_cpu_s is not None else "")
                                 + (f" · timeseries {e.timeseries_file}" if e.timeseries_file else "")))
    if full:
        rows.append(("quality flags", escape(", ".join(r.quality_flags)) or "none"))
        rows += [("[yellow]warning[/]", escape(w)) for w in r.warnings]
    return rows


def phase_row(r: ExperimentResult) -> tuple[str, str] | None:
    """Prefill and decode energy on one line (the summary's; ``show`` has a phase table)."""
    ph = r.phases
    if ph is None:
        return None
    if ph.prefill.energy_j is None or ph.decode.energy_j is None:
        # a measured run whose phases could not be split says why; an unmeasured one's raw row already does
        if r.total_energy_j is None or not ph.energy_unavailable_reason:
            return None
        return ("phases", f"energy null — {escape(ph.energy_unavailable_reason)}")
    def share(p) -> str:  # null when the two phases' energies do not make a share (e.g. they sum to 0)
        return f" ({p.energy_share:.0%})" if p.energy_share is not None else ""

    return ("phases", f"prefill {ph.prefill.energy_j:.3f} J in {ph.prefill.time_s:.2f} s{share(ph.prefill)} · "
                      f"decode {ph.decode.energy_j:.3f} J in {ph.decode.time_s:.2f} s{share(ph.decode)}")


def capacity_rows(c) -> list[tuple[str, str]]:
    """The capacity search on screen (docs/method.md, "Serving", capacity search): what it found, then the probes."""
    unit = "clients" if c.knob == "concurrency" else "req/s"
    where = {"bracketed": f"below {c.first_failing:.3g} {unit}" if c.first_failing is not None else "",
             "at_least_max": "the bracket's high end passed: at least this",
             "below_min": "the bracket's low end failed"}[c.found]
    found = "none" if c.capacity is None else f"{c.capacity:.3g} {unit}"
    rows = [("capacity", f"{found} ({where}) · {len(c.probes)} probe(s) · >= {c.good_share_target:g} of requests "
                         f"within the SLO"),
            ("at capacity", f"goodput {figure(c.goodput_rps, 'req/s', '.2f')} · J per good output token "
                            f"{figure(c.energy_per_good_token_j, 'J')} · J/request "
                            f"{figure(c.energy_per_request_j, 'J')}")]
    rows += [(f"probe {p.index + 1}", f"{p.load:.3g} {unit}: {p.verdict.replace('_', ' ')} · good "
                                      f"{'-' if p.good_share is None else f'{p.good_share:.0%}'} · TTFT p50 "
                                      f"{figure(p.ttft_p50_ms, 'ms', '.3g')}") for p in c.probes]
    return rows


#: turn indices shown on screen; the rest are in result.json (serving.conversations.by_turn)
TURNS_SHOWN = 8


def conversation_rows(c) -> list[tuple[str, str]]:
    """Multi-turn figures on screen (docs/method.md, "Serving", multi-turn conversations): per conversation, then
    per turn index."""
    prompt = "chat template" if c.prompt_format == TEMPLATED else "plain role labels"
    lag = ("-" if c.think_lag_p50_ms is None else
           f"{c.think_lag_p50_ms:.2f} / {c.think_lag_p99_ms:.2f} ms")
    rows = [("conversations", f"{c.n_complete} of {c.n_conversations} complete · {c.turns_sent} turns sent · "
                              f"mean {figure(c.duration_mean_s, 's', '.3g')} · prompts by {prompt}"),
            ("per conversation", f"J mean {figure(c.energy_per_conversation_mean_j, 'J')} · p50 "
                                 f"{figure(c.energy_per_conversation_p50_j, 'J')} · think lag p50 / p99 {lag}")]
    for t in c.by_turn[:TURNS_SHOWN]:
        prompt_tokens = "-" if t.input_tokens_mean is None else f"{t.input_tokens_mean:.0f}"
        rows.append((f"turn {t.turn}", f"{t.n_ok}/{t.n} ok · prompt {prompt_tokens} tok · TTFT p50 "
                                       f"{figure(t.ttft_p50_ms, 'ms', '.3g')} · TPOT p50 "
                                       f"{figure(t.tpot_p50_ms, 'ms', '.3g')} · J mean "
                                       f"{figure(t.energy_mean_j, 'J')}"))
    if len(c.by_turn) > TURNS_SHOWN:
        rows.append(("later turns", f"{len(c.by_turn) - TURNS_SHOWN} more in result.json "
                                    "(serving.conversations.by_turn)"))
    return rows


def serving_rows(result: ExperimentResult) -> list[tuple[str, str]]:
    """The serving figures on screen (definitions: docs/method.md, "Serving")."""
    s = result.serving
    if s is None:
        return []
    offered = f"{s.offered_rate_rps:g}" if s.offered_rate_rps is not None else f"closed loop, {s.clients} clients"
    achieved = f"{s.achieved_rate_rps:.2f}" if s.achieved_rate_rps is not None else "-"
    rows = [("load", f"{s.arrival}: offered {offered} req/s · achieved {achieved} · completed "
                     f"{s.completed_rate_rps:.2f} · in flight mean {s.inflight_mean:.1f} / max {s.inflight_max}"),
            ("requests ok", f"{s.n_ok} of {s.n_requests} · {s.n_errors} error(s) · {s.n_timeouts} timeout(s)"),
            ("TPOT", latency(s.tpot)), ("E2E", latency(s.e2e))]
    if s.n_good is not None:
        rows.append(("SLO goodput", f"{s.n_good}/{s.n_requests} met {escape(slo_text(s.slo))} · "
                                    f"{figure(s.goodput_rps, 'req/s', '.2f')}"
                                    f" · J per good output token {figure(s.energy_per_good_token_j, 'J')}"))
    if s.capacity is not None:
        rows += capacity_rows(s.capacity)
    if s.conversations is not None:
        rows += conversation_rows(s.conversations)
    if s.energy_per_request is not None:
        e = s.energy_per_request
        rows.append(("J/answer", f"mean {e.mean_j:.4g} · p50 {e.p50_j:.4g} · p90 {e.p90_j:.4g} J · J/token "
                                 f"{figure(result.energy_per_token_j, 'J')}"))
        rows.append(("idle", f"{figure(s.idle_energy_j, 'J')} over {s.idle_time_s:.2f} s with nothing in flight"))
    if s.ttfat is not None:
        rows.append(("TTFAT", latency(s.ttfat) + (f" · {s.ttfat_not_reached} never reached the answer"
                                                  if s.ttfat_not_reached else "")))
    if s.prefix_cache_hit_rate is not None or s.prefix_cache_queried_tokens == 0:
        rate = "-" if s.prefix_cache_hit_rate is None else f"{s.prefix_cache_hit_rate:.1%}"
        rows.append(("prefix cache", f"hit rate {rate} · {s.prefix_cache_hit_tokens or 0} of "
                                     f"{s.prefix_cache_queried_tokens} prompt tokens cached (window)"))
    rows.append(("server", f"{escape(s.server)} · ready in "
                           f"{'-' if s.server_start_s is None else f'{s.server_start_s:.1f} s'} (outside the window)"))
    return rows
