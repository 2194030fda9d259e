"""How a number, a latency distribution and a duration read on screen, the same in every view."""

from __future__ import annotations

from lem_runner.contract import LatencyStats


def figure(value: float | None, unit: str = "", spec: str = ".4g") -> str:
    """``12.3 J``; ``null`` when not measured (never a blank that could read as zero)."""
    return "null" if value is None else f"{format(value, spec)}{(' ' + unit) if unit else ''}"


#: an SLO bound's key in result.serving.slo, as a reader names it
_SLO_NAMES = {"ttft_ms": "TTFT", "tpot_ms": "TPOT", "e2e_ms": "E2E", "itl_ms": "ITL"}


def slo_text(slo: dict[str, float] | None) -> str:
    """``TTFT ≤ 500 ms, TPOT ≤ 50 ms``: the bounds a request had to meet; ``no SLO`` when none was set."""
    if not slo:
        return "no SLO"
    return ", ".join(f"{_SLO_NAMES.get(k, k.removesuffix('_ms'))} ≤ {v:g} ms" for k, v in slo.items())


def fewer_prompts(batch: int | None, n_prompts: int, scenario: str) -> str:
    """``; 4 prompts, so at most 4 at once`` when an offline run's prompts do not fill its batch (the batch is the
    knob's value everywhere: dry run, summary, list, export), else ``""``."""
    if batch is None or scenario != "offline" or n_prompts >= batch:
        return ""
    return f"; {n_prompts} prompt(s), so at most {n_prompts} at once"


def latency(stats: LatencyStats | None, extremes: bool = False) -> str:
    """``mean … · p50 … · p90 … · p99 … ms (n=…)``, with min and max when ``extremes``."""
    if stats is None:
        return "null (not recorded)"
    tail = f" · min {stats.min_ms:.2f} · max {stats.max_ms:.2f}" if extremes else ""
    return (f"mean {stats.mean_ms:.2f} · p50 {stats.p50_ms:.2f} · p90 {stats.p90_ms:.2f} · p99 {stats.p99_ms:.2f}"
            f"{tail} ms (n={stats.n})")


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2.5 h``: a rough duration, for elapsed times and ETAs."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def clock(seconds: float) -> str:
    """``1:02:03`` or ``2:03``: a duration as a clock reads."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"
