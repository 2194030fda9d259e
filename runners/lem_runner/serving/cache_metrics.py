"""The server's prefix-cache hit rate over the load window (docs/method.md, "Prefix cache hit rate"): its two
counters (ServerCommand.prefix_cache_metrics: tokens looked up, tokens found cached) read from GET /metrics just
before the window opens and just after it closes; the rate is the found tokens' increase over the looked-up tokens'
increase. Null with the reason where the server has no such counters, they cannot be read, or nothing was looked
up (the cache is off)."""

from __future__ import annotations

from dataclasses import dataclass

NO_COUNTERS = "{server} exposes no prefix-cache counters (no prefix cache lem can read)"
ENDPOINT = "a user's endpoint: lem does not know which counters its server exposes"
UNREAD = "GET /metrics did not answer with the prefix-cache counters {when} the window"
NO_LOOKUPS = ("the server looked nothing up in its prefix cache during the window ({queries} = 0): its prefix cache "
              "is off")


@dataclass(frozen=True)
class CacheReading:
    """The two counters at one instant, or None for each one /metrics did not give."""

    queries: float | None
    hits: float | None


@dataclass(frozen=True)
class CacheFigures:
    hit_rate: float | None
    queried_tokens: int | None
    hit_tokens: int | None
    source: str | None
    reason: str | None


def read_counters(server, names: tuple[str, str] | None) -> CacheReading | None:
    """The counters now (None without counters to read)."""
    if server is None or names is None:
        return None
    sums = server.metric_sums(names)
    if sums is None:
        return CacheReading(None, None)
    return CacheReading(sums.get(names[0]), sums.get(names[1]))


def cache_figures(before: CacheReading | None, after: CacheReading | None, names: tuple[str, str] | None,
                  server_name: str | None) -> CacheFigures:
    """The window's hit rate from the readings at its two edges (see the module's definition)."""
    if server_name is None:
        return CacheFigures(None, None, None, None, ENDPOINT)
    if names is None:
        return CacheFigures(None, None, None, None, NO_COUNTERS.format(server=server_name))
    source = f"GET /metrics: {names[1]} / {names[0]}, increase over the window"
    for reading, when in ((before, "before"), (after, "after")):
        if reading is None or reading.queries is None or reading.hits is None:
            return CacheFigures(None, None, None, source, UNREAD.format(when=when))
    queries = after.queries - before.queries  # type: ignore[operator,union-attr]
    hits = after.hits - before.hits  # type: ignore[operator,union-attr]
    if queries <= 0:
        return CacheFigures(None, 0, int(hits), source, NO_LOOKUPS.format(queries=names[0]))
    return CacheFigures(hits / queries, int(queries), int(hits), source, None)
