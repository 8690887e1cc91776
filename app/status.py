"""What ``tcp.py up`` says while it runs: a periodic one-line status, and the collector's state when it
cannot reach the exchange.

Everything comes from the database the flow writes (``collector_health``, ``candles_1m``, ``trades``)
and the sink's spool directory, so it reads the same with or without Redis and never slows the flow:

    16:05:00 status: okx:public-0 running · 12 candles written · 41.3 trades/s · lag 0.4 s
      · reconnects 0 · spool 0
    OKX not reachable (okx:public-0 reconnecting since 16:02:11 UTC): gaierror: [Errno -2] Name or service
      not known. The flow keeps retrying. No route to OKX? `python3 tcp.py up --offline` runs everything
      against the bundled simulator.

A snapshot older than ``HEALTH_EXPIRES_AFTER`` or from before this run started is not current, so a
collector of an earlier run is never reported as this one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from app.services import LABELS
from app.supervisor import SERVICE_PREFIX
from connectors.health_table import latest_health

STATUS_EVERY = 30.0
"""Seconds between status lines."""
FIRST_STATUS_AFTER = 10.0
"""Seconds after the start before the first status line (the collectors report every 5 s)."""
WATCH_EVERY = 2.0
"""Seconds between looks at the collectors' state (health snapshots come every 5 s)."""
OFFLINE_HINT = "No route to OKX? `python3 tcp.py up --offline` runs everything against the bundled simulator."
_DOWN = ("reconnecting", "error")

_LATEST_TRADES = """
SELECT (SELECT max(time) FROM trades WHERE exchange = e AND symbol = s)
FROM unnest(%s::text[], %s::text[]) AS f(e, s)
"""
_LATEST_CANDLES = """
SELECT e, s, (SELECT max(time) FROM candles_1m WHERE exchange = e AND symbol = s)
FROM unnest(%s::text[], %s::text[]) AS f(e, s)
"""
_CANDLES_SINCE = """
SELECT count(*) FROM candles_1m c
  JOIN unnest(%s::text[], %s::text[], %s::timestamptz[]) AS b(exchange, symbol, after)
  ON c.exchange = b.exchange AND c.symbol = b.symbol AND c.time > b.after
"""


@dataclass
class Reading:
    """One look at the running system."""

    at: datetime
    collectors: list[dict[str, Any]]
    candles_written: int
    newest_trade: datetime | None
    spooled: int


def _after(value: object, start: datetime) -> bool:
    return isinstance(value, datetime) and value >= start


def utc_clock(t: datetime) -> str:
    return t.strftime("%H:%M:%S UTC")


def down_message(collector: Mapping[str, Any], offline: bool) -> str:
    """What the terminal says when a collector cannot reach its exchange."""
    since = collector.get("status_since")
    when = f" since {utc_clock(since)}" if isinstance(since, datetime) else ""
    name = collector["collector"]
    error = collector.get("last_error") or "no error reported"
    exchange = str(name).split(":", 1)[0]
    exchange = LABELS.get(exchange, exchange)
    target = f"the {exchange} simulator" if offline else exchange
    text = f"{target} not reachable ({name} {collector['status']}{when}): {error}. The flow keeps retrying."
    return text if offline else f"{text} {OFFLINE_HINT}"


def status_line(now: Reading, before: Reading | None) -> str:
    """The periodic status: each current collector's state, candles written since start, trade rate
    over the interval, how far the newest stored trade is behind now, reconnects, spooled batches."""
    states = ", ".join(f"{c['collector']} {c['status']}" for c in now.collectors) or "no collector reporting"
    processed = sum(int(c.get("messages_processed", 0)) for c in now.collectors)
    rate = ""
    if before is not None and now.at > before.at:
        earlier = sum(int(c.get("messages_processed", 0)) for c in before.collectors)
        seconds = (now.at - before.at).total_seconds()
        rate = f" · {max(0, processed - earlier) / seconds:.1f} trades/s"
    lag = f"{(now.at - now.newest_trade).total_seconds():.1f} s" if now.newest_trade else "no trades yet"
    reconnects = sum(int(c.get("reconnect_attempts", 0)) for c in now.collectors)
    return (
        f"{now.at:%H:%M:%S} status: {states} · {now.candles_written} candles written{rate}"
        f" · lag {lag} · reconnects {reconnects} · spool {now.spooled}"
    )


@dataclass
class StatusWatch:
    """Reads the database every ``WATCH_EVERY`` s; says what changed and a status line every
    ``STATUS_EVERY`` s. ``say`` prints one line; database errors are said once, then retried quietly."""

    url: str
    instruments: Sequence[tuple[str, str]]
    """``(exchange, symbol)`` of each followed instrument."""
    spool_dir: Path
    started: datetime
    offline: bool
    say: Callable[[str], None] = print
    _baseline: list[datetime] | None = None
    _last_status: Reading | None = None
    _down: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    _failing: bool = False

    def poll(self, now: datetime) -> None:
        try:
            reading = self.read(now)
        except psycopg.Error as error:
            if not self._failing:
                self.say(f"status: the database is not reachable ({' '.join(str(error).split())}); retrying")
            self._failing = True
            return
        self._failing = False
        self._report_changes(reading)
        if self._last_status is None:
            due = (now - self.started).total_seconds() >= FIRST_STATUS_AFTER
        else:
            due = (now - self._last_status.at).total_seconds() >= STATUS_EVERY
        if due:
            self.say(status_line(reading, self._last_status))
            self._last_status = reading

    def read(self, now: datetime) -> Reading:
        exchanges = [e for e, _ in self.instruments]
        symbols = [s for _, s in self.instruments]
        with psycopg.connect(self.url, connect_timeout=3, autocommit=True) as conn:
            if self._baseline is None:
                rows = {
                    (e, s): t for e, s, t in conn.execute(_LATEST_CANDLES, (exchanges, symbols)).fetchall()
                }
                earliest = datetime.min.replace(tzinfo=now.tzinfo)
                self._baseline = [rows.get(f) or earliest for f in self.instruments]
            written = conn.execute(_CANDLES_SINCE, (exchanges, symbols, self._baseline)).fetchone()
            latest = conn.execute(_LATEST_TRADES, (exchanges, symbols)).fetchall()
            newest = [t for (t,) in latest if t is not None]
            collectors = [
                c
                for c in latest_health(conn, now)
                if _after(c["time"], self.started) and not str(c["collector"]).startswith(SERVICE_PREFIX)
            ]
        spooled = sum(1 for _ in self.spool_dir.glob("db-*/*.batch")) if self.spool_dir.exists() else 0
        return Reading(now, collectors, int(written[0]) if written else 0, max(newest, default=None), spooled)

    def _report_changes(self, reading: Reading) -> None:
        for collector in reading.collectors:
            name, status = collector["collector"], collector["status"]
            seen = self._down.get(name)
            if status in _DOWN:
                episode = (status, collector.get("last_error"))
                if seen != episode:
                    self.say(down_message(collector, self.offline))
                    self._down[name] = episode
            elif seen is not None and status == "running":
                self.say(f"{name} connected again at {utc_clock(reading.at)}")
                del self._down[name]
