"""Serving scenarios whose truth is known, for the serving figures' tests: a step-level engine with chunked prefill
and a known energy per step, a k-slot server with a fixed service time, and counter readings of a scripted power
curve (a real CounterTrack fed by FakeCounterDevice). Nothing here calls lem's figures: the truth is computed apart.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from fakes import FakeClock, FakeCounterDevice
from lem_runner.energy.base import EnergyReading
from lem_runner.energy.counter import CounterTrack
from lem_runner.serving.records import RequestRecord


def reading_of(joules_at: Callable[[float], float], t_end: float, read_every_s: float = 0.01) -> EnergyReading:
    """A counter read every ``read_every_s`` from a device whose cumulative energy is ``joules_at(t)``."""
    clock = FakeClock()
    dev = FakeCounterDevice(clock, joules_at)
    track = CounterTrack()
    for _ in range(round(t_end / read_every_s) + 1):
        track.feed(clock.now, dev.energy_mj())
        clock.advance(read_every_s)
    return EnergyReading("fake", "fake counter", t_end, total_j=track.total_j, tracks={"0": track}, t_start=0.0,
                         t_end=clock.now - read_every_s)


def piecewise_power(edges: list[float], watts: list[float]) -> Callable[[float], float]:
    """Cumulative joules of a power curve holding ``watts[k]`` over [edges[k], edges[k+1]) (0 W outside)."""
    cum = [0.0]
    for k, w in enumerate(watts):
        cum.append(cum[-1] + w * (edges[k + 1] - edges[k]))

    def joules_at(t: float) -> float:
        if t <= edges[0]:
            return 0.0
        if t >= edges[-1]:
            return cum[-1]
        k = bisect.bisect_right(edges, t) - 1
        return cum[k] + watts[k] * (t - edges[k])

    return joules_at


@dataclass
class EngineRun:
    records: list[RequestRecord]
    joules_at: Callable[[float], float]
    truth_j: list[float]  # each request's energy: every step's energy split by the tokens each request had in it
    end: float
    steps: list[tuple[float, float, dict[int, int]]] = field(default_factory=list)


def chunked_prefill_engine(arrivals: list[tuple[float, int, int]], step_s: float = 0.02, budget: int = 512,
                           static_w: float = 60.0, j_per_token: float = 0.01, idle_w: float = 30.0) -> EngineRun:
    """A continuous-batching engine with chunked prefill, stepping every ``step_s`` while it has work: each step
    gives every decoding request one token, then fills the rest of its ``budget`` tokens with prefill chunks, first
    come first served (vLLM's V1 scheduler, in outline). A request's first token comes at the end of the step that
    finishes its prompt, each later one at the end of a decode step. A step draws ``static_w`` plus
    ``j_per_token`` joules per token it processes; the engine idles at ``idle_w``. ``arrivals``: (time, input
    tokens, output tokens), the time on the step grid's clock (a request waits for the next step)."""
    n = len(arrivals)
    left_prompt = [a[1] for a in arrivals]
    left_out = [a[2] for a in arrivals]
    recs = [RequestRecord(i, None, a[0], input_tokens=a[1], status="ok") for i, a in enumerate(arrivals)]
    truth = [0.0] * n
    edges, watts, steps = [0.0], [], []
    t = 0.0
    while any(left_out):
        live = [i for i in range(n) if arrivals[i][0] <= t + 1e-12 and left_out[i] > 0]
        if not live:
            nxt = min(arrivals[i][0] for i in range(n) if left_out[i] > 0)
            t_next = round(step_s * math.ceil(round(nxt / step_s, 9)), 9)  # the next step boundary from the arrival
            edges.append(t_next)
            watts.append(idle_w)
            t = t_next
            continue
        work: dict[int, int] = {}
        decoding = [i for i in live if left_prompt[i] == 0]
        for i in decoding:
            work[i] = 1
        room = budget - len(decoding)
        for i in sorted((i for i in live if left_prompt[i] > 0), key=lambda i: arrivals[i][0]):
            if room <= 0:
                break
            chunk = min(room, left_prompt[i])
            work[i] = chunk
            room -= chunk
        energy = static_w * step_s + j_per_token * sum(work.values())
        end = round(t + step_s, 9)
        for i, w in work.items():
            truth[i] += energy * w / sum(work.values())
            if left_prompt[i] > 0:
                left_prompt[i] -= w
                if left_prompt[i] == 0:  # the prompt's last chunk gives the first token
                    _token(recs[i], end)
                    left_out[i] -= 1
            else:
                _token(recs[i], end)
                left_out[i] -= 1
            if left_out[i] == 0:
                recs[i].end = end
        steps.append((t, end, work))
        edges.append(end)
        watts.append(energy / step_s)
        t = end
    edges.append(t + 1.0)
    watts.append(idle_w)
    return EngineRun(recs, piecewise_power(edges, watts), truth, t, steps)


def _token(rec: RequestRecord, t: float) -> None:
    rec.chunk_times.append(t)
    rec.chunk_tokens.append(1)
    rec.output_tokens += 1
    if rec.first_token is None:
        rec.first_token = t


def slot_server(arrivals: list[float], slots: int, service_s: float, ttft_s: float = 0.05,
                token_every_s: float = 0.1) -> list[RequestRecord]:
    """A server of ``slots`` slots, first come first served, each request taking ``service_s`` once it has a slot:
    first token ``ttft_s`` after it starts, then one token every ``token_every_s``; capacity slots / service_s."""
    free = [0.0] * slots
    out = []
    for i, a in enumerate(sorted(arrivals)):
        k = min(range(slots), key=lambda j: free[j])
        start = max(a, free[k])
        free[k] = start + service_s
        times = [start + ttft_s + token_every_s * j for j in range(int((service_s - ttft_s) / token_every_s) + 1)]
        times = [x for x in times if x <= start + service_s]
        out.append(RequestRecord(i, a, a, first_token=times[0], end=start + service_s, chunk_times=times,
                                 chunk_tokens=[1] * len(times), input_tokens=16, output_tokens=len(times),
                                 status="ok"))
    return out
