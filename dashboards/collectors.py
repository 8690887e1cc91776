"""Collector status as the page tells it: pure, no I/O, no clock read (``now`` is passed in).

The status comes from the database (table ``collector_health``, one row per collector, upserted by the
live flow at each health snapshot), so the chart and the Health page say the same thing with or without
Redis. A snapshot older than ``HEALTH_EXPIRES_AFTER`` is not current: its collector is shown as "not
reporting (last seen ...)", never as the collector's present state. ``empty_message`` explains an empty
chart from these states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from connectors.redis_codec import decode
from market.health import HEALTH_EXPIRES_AFTER
from market.timeframes import TIMEFRAMES

OFFLINE_HINT = "`python3 tcp.py up --offline` runs against the bundled simulator."
START_HINT = (
    "`python3 tcp.py up` starts the OKX collector (" + OFFLINE_HINT.removesuffix(".") + "), or replay a tape "
    "into the database."
)


@dataclass(frozen=True)
class CollectorState:
    """The latest snapshot of one collector: status, since when, last error, and the whole payload."""

    collector: str
    time: datetime
    status: str
    is_healthy: bool
    status_since: datetime | None = None
    last_error: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    """The snapshot as published on Redis (docs/redis.md): counters, issues; times as UTC datetimes."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CollectorState:
        """A ``collector_health`` row; its ``payload`` (jsonb) is decoded like a Redis payload."""
        payload = row.get("payload") or {}
        return cls(
            collector=row["collector"],
            time=row["time"],
            status=row["status"],
            is_healthy=bool(row["is_healthy"]),
            status_since=row.get("status_since"),
            last_error=row.get("last_error"),
            payload=decode(orjson.dumps(payload)) if isinstance(payload, Mapping) else {},
        )

    @property
    def is_service(self) -> bool:
        """A process of ``tcp.py up`` (``service:flow`` ...) rather than an exchange collector."""
        return self.collector.startswith("service:")

    def current(self, now: datetime) -> bool:
        """Whether the snapshot is recent enough to be the collector's present state."""
        return now - self.time <= HEALTH_EXPIRES_AFTER

    def describe(self, now: datetime, with_error: bool = True) -> str:
        """``reconnecting since 16:02:11 UTC: <last error>``, ``running since ...``, or
        ``not reporting (last seen 16:01:40 UTC)`` for a snapshot that is not current."""
        if not self.current(now):
            return f"not reporting (last seen {self.time:%H:%M:%S} UTC)"
        text = self.status
        if self.status_since is not None:
            text += f" since {self.status_since:%H:%M:%S} UTC"
        if with_error and self.status != "running" and self.last_error:
            text += f": {self.last_error}"
        return text


def collector_states(rows: Sequence[Mapping[str, Any]]) -> list[CollectorState]:
    return [CollectorState.from_row(row) for row in rows]


def collectors_sentence(states: Sequence[CollectorState], now: datetime) -> str:
    """One line about every collector, the same on the chart and on the Health page."""
    # A service (a process of `up`) is told only while it is not running: restarting or given up.
    parts = [f"Collector {s.collector}: {s.describe(now)}" for s in states if not s.is_service]
    parts = parts or ["No collector has reported its status to the database yet"]
    parts += [
        f"Service {s.collector}: {s.describe(now)}"
        for s in states
        if s.is_service and s.current(now) and s.status != "running"
    ]
    return "; ".join(parts) + "."


def empty_message(symbol: str, timeframe: str, states: Sequence[CollectorState], now: datetime) -> str:
    """Why a series has no candle yet, from the collectors' states (Markdown: commands in backticks)."""
    head = f"No candles yet for {symbol} {timeframe}."
    given_up = [s for s in states if s.is_service and s.current(now) and s.status == "error"]
    if given_up:
        s = given_up[0]
        return (
            f"{head} The {s.collector.removeprefix('service:')} service is not running: {s.last_error}. "
            "Fix the cause and run `python3 tcp.py up` again."
        )
    states = [s for s in states if not s.is_service]
    current = [s for s in states if s.current(now)]
    if not states:
        return f"{head} No collector is reporting: {START_HINT}"
    if not current:
        gone = "; ".join(f"the collector {s.collector} is {s.describe(now)}" for s in states)
        return f"{head} No collector is running: {gone}. {START_HINT}"
    troubled = [s for s in current if s.status != "running"]
    if len(troubled) == len(current):  # none running (with one running, its candles are on their way)
        s = troubled[0]
        tail = {
            "reconnecting": f"It keeps retrying; {OFFLINE_HINT}",
            "error": f"It keeps retrying; {OFFLINE_HINT}",
            "starting": "Candles follow once it is subscribed.",
            "stopped": START_HINT,
        }.get(s.status, OFFLINE_HINT)
        return f"{head} The OKX collector ({s.collector}) is {s.describe(now)}. {tail}"
    first_close = TIMEFRAMES[timeframe].close_of(now)
    when = f"{first_close:%H:%M}" if first_close.date() == now.date() else f"{first_close:%Y-%m-%d %H:%M}"
    return f"{head} The OKX collector is running; the first {timeframe} candle closes at {when} UTC."
