"""One request the load generator will send: its own module because the schedule (serving/schedule.py), the shared
prefix rewrite (serving/prefix.py), the client and the multi-turn driver all build or read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlannedRequest:
    index: int
    arrival_s: float | None  # offset from the load's start; None in a closed loop (sent when a client is free)
    prompt: str | list  # text, or token ids when an exact input length was asked for (a chat turn: messages)
    max_tokens: int
    prefix_group: int | None = None  # serving.shared_prefix: the shared prefix its prompt starts with
