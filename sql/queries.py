"""Named read queries: the one way the dashboard and users read the database (docs/sql.md, "Named queries").

Each function takes an open psycopg 3 connection (any engine: plain PostgreSQL or TimescaleDB) and
returns a list of dicts keyed by column name, oldest first unless said otherwise. Values are bound
parameters; a timeframe is checked against the six names and picks its relation from a fixed map, so
no SQL text ever depends on input. Times are timezone-aware UTC; candle and period ``time`` is the
close (TIME.md rule 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

TIMEFRAMES: tuple[str, ...] = ("1m", "5m", "15m", "1h", "4h", "1d")
RELATIONS: dict[str, str] = {tf: f"candles_{tf}" for tf in TIMEFRAMES}
"""The public relation of each timeframe: candles_1m (a table) and the rollup views of migration 0008."""
CANDLE_COLUMNS: tuple[str, ...] = (
    "exchange",
    "symbol",
    "time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trade_count",
    "vwap",
    "first_trade_id",
    "last_trade_id",
)
MAX_ROWS = 100_000
Row = dict[str, Any]


def _per_timeframe(template: str) -> dict[str, sql.Composed]:
    """The statement for each timeframe, composed once from constants (``{relation}``, ``{columns}``)."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in CANDLE_COLUMNS)
    return {
        tf: sql.SQL(template).format(relation=sql.Identifier(rel), columns=columns)
        for tf, rel in RELATIONS.items()
    }


LATEST_CANDLES = _per_timeframe(
    "SELECT * FROM (SELECT {columns} FROM {relation}"
    " WHERE exchange = %(exchange)s AND symbol = %(symbol)s"
    " ORDER BY time DESC LIMIT %(limit)s) latest ORDER BY time"
)
CANDLES_BETWEEN = _per_timeframe(
    "SELECT {columns} FROM {relation}"
    " WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND time > %(start)s AND time <= %(end)s"
    " ORDER BY time LIMIT %(limit)s"
)
LATEST_CLOSES = _per_timeframe(
    "SELECT wanted.symbol, last.time, last.close, last.trade_count"
    " FROM unnest(%(symbols)s::text[]) AS wanted (symbol)"
    " CROSS JOIN LATERAL (SELECT time, close, trade_count FROM {relation}"
    "   WHERE exchange = %(exchange)s AND symbol = wanted.symbol ORDER BY time DESC LIMIT 1) last"
    " ORDER BY wanted.symbol"
)
LATE_TRADE_COUNTS = """
SELECT exchange, symbol,
       date_bin(%(period)s::interval, time, TIMESTAMPTZ '1970-01-01 00:00:00+00') + %(period)s::interval
           AS time,
       count(*) AS late_trades, max(lateness) AS max_lateness
FROM late_trades
WHERE time >= %(start)s AND time < %(end)s
  AND (%(exchange)s::text IS NULL OR exchange = %(exchange)s)
  AND (%(symbol)s::text IS NULL OR symbol = %(symbol)s)
GROUP BY 1, 2, 3
ORDER BY time, exchange, symbol
"""
REJECT_COUNTS = """
SELECT source, reason,
       date_bin(%(period)s::interval, received_at, TIMESTAMPTZ '1970-01-01 00:00:00+00')
           + %(period)s::interval AS time,
       count(*) AS rejects
FROM rejects
WHERE received_at >= %(start)s AND received_at < %(end)s
GROUP BY 1, 2, 3
ORDER BY time, source, reason
"""
GAPS = """
SELECT exchange, symbol, from_trade_id, to_trade_id, from_time, to_time, filled, trades_backfilled,
       detected_at
FROM gaps
WHERE (%(exchange)s::text IS NULL OR exchange = %(exchange)s)
  AND (%(symbol)s::text IS NULL OR symbol = %(symbol)s)
  AND (%(since)s::timestamptz IS NULL OR detected_at >= %(since)s)
  AND (NOT %(unfilled_only)s OR NOT filled)
ORDER BY detected_at DESC, exchange, symbol, from_trade_id
LIMIT %(limit)s
"""
# The newest value of each (indicator, output) of a series, stamped <= %(at)s: a skip scan over the
# primary key (exchange, symbol, timeframe, indicator, output, time), a few index probes per output.
LATEST_INDICATORS = """
WITH RECURSIVE outputs AS (
    (SELECT indicator, output FROM indicators
     WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND timeframe = %(timeframe)s
     ORDER BY indicator, output LIMIT 1)
    UNION ALL
    SELECT following.indicator, following.output
    FROM outputs previous
    CROSS JOIN LATERAL (
        SELECT indicator, output FROM indicators
        WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND timeframe = %(timeframe)s
          AND (indicator, output) > (previous.indicator, previous.output)
        ORDER BY indicator, output LIMIT 1) following
)
SELECT outputs.indicator, outputs.output, newest.time, newest.value
FROM outputs
CROSS JOIN LATERAL (
    SELECT time, value FROM indicators
    WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND timeframe = %(timeframe)s
      AND indicator = outputs.indicator AND output = outputs.output
      AND (%(at)s::timestamptz IS NULL OR time <= %(at)s)
    ORDER BY time DESC LIMIT 1) newest
ORDER BY outputs.indicator, outputs.output
"""
RECENT_SIGNALS = """
SELECT exchange, symbol, timeframe, time, strategy, action, reason, values
FROM signals
WHERE exchange = %(exchange)s AND symbol = %(symbol)s
  AND (%(timeframe)s::text IS NULL OR timeframe = %(timeframe)s)
  AND (%(since)s::timestamptz IS NULL OR time > %(since)s)
ORDER BY time DESC, timeframe, strategy
LIMIT %(limit)s
"""

# The symbols of an exchange that have 1m candles: a skip scan over the primary key (exchange, symbol,
# time), one index probe per symbol rather than a scan of every candle.
SYMBOLS = """
WITH RECURSIVE found AS (
    (SELECT symbol FROM candles_1m WHERE exchange = %(exchange)s ORDER BY symbol LIMIT 1)
    UNION ALL
    SELECT following.symbol
    FROM found previous
    CROSS JOIN LATERAL (
        SELECT symbol FROM candles_1m
        WHERE exchange = %(exchange)s AND symbol > previous.symbol
        ORDER BY symbol LIMIT 1) following
)
SELECT symbol FROM found ORDER BY symbol
"""
COLLECTOR_HEALTH_EXISTS = "SELECT to_regclass('collector_health') IS NOT NULL AS present"
COLLECTOR_HEALTH = """
SELECT collector, time, status, is_healthy, status_since, last_error, payload
FROM collector_health
ORDER BY collector
"""


def check_timeframe(timeframe: str) -> str:
    """``timeframe`` if it is one of the six names, else ValueError."""
    if timeframe not in RELATIONS:
        raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}")
    return timeframe


def _limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_ROWS:
        raise ValueError(f"limit must be an integer from 1 to {MAX_ROWS}, got {limit!r}")
    return limit


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} is a naive datetime: every time in this project is timezone-aware UTC")
    return value


def _period(period: timedelta) -> timedelta:
    if period <= timedelta(0):
        raise ValueError("period must be positive")
    return period


def _fetch(conn: psycopg.Connection[Any], query: sql.Composed | str, params: dict[str, Any]) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def latest_candles(
    conn: psycopg.Connection[Any], exchange: str, symbol: str, timeframe: str, limit: int = 500
) -> list[Row]:
    """The newest ``limit`` final candles of a series, oldest first."""
    query = LATEST_CANDLES[check_timeframe(timeframe)]
    return _fetch(conn, query, {"exchange": exchange, "symbol": symbol, "limit": _limit(limit)})


def candles_between(
    conn: psycopg.Connection[Any],
    exchange: str,
    symbol: str,
    timeframe: str,
    start: datetime,
    end: datetime,
    limit: int = MAX_ROWS,
) -> list[Row]:
    """Candles closing in ``(start, end]``: for boundaries on the timeframe's grid, exactly the candles
    covering ``[start, end)``. Oldest first, at most ``limit``."""
    query = CANDLES_BETWEEN[check_timeframe(timeframe)]
    return _fetch(
        conn,
        query,
        {
            "exchange": exchange,
            "symbol": symbol,
            "start": _aware("start", start),
            "end": _aware("end", end),
            "limit": _limit(limit),
        },
    )


def latest_closes(
    conn: psycopg.Connection[Any], exchange: str, symbols: Sequence[str], timeframe: str = "1m"
) -> list[Row]:
    """For each symbol that has candles: its newest candle's close time, close and trade count."""
    query = LATEST_CLOSES[check_timeframe(timeframe)]
    return _fetch(conn, query, {"exchange": exchange, "symbols": list(symbols)})


def late_trade_counts(
    conn: psycopg.Connection[Any],
    start: datetime,
    end: datetime,
    period: timedelta = timedelta(hours=1),
    exchange: str | None = None,
    symbol: str | None = None,
) -> list[Row]:
    """Late trades (trade time in ``[start, end)``) per series and per period; ``time`` closes the period
    (periods aligned to the UTC epoch). Only periods with late trades appear."""
    return _fetch(
        conn,
        LATE_TRADE_COUNTS,
        {
            "start": _aware("start", start),
            "end": _aware("end", end),
            "period": _period(period),
            "exchange": exchange,
            "symbol": symbol,
        },
    )


def reject_counts(
    conn: psycopg.Connection[Any], start: datetime, end: datetime, period: timedelta = timedelta(hours=1)
) -> list[Row]:
    """Rejected messages received in ``[start, end)`` per source, reason and period (``time`` = its close)."""
    return _fetch(
        conn,
        REJECT_COUNTS,
        {"start": _aware("start", start), "end": _aware("end", end), "period": _period(period)},
    )


def gaps(
    conn: psycopg.Connection[Any],
    exchange: str | None = None,
    symbol: str | None = None,
    since: datetime | None = None,
    unfilled_only: bool = False,
    limit: int = 1000,
) -> list[Row]:
    """Holes detected in the trade stream, newest detection first."""
    return _fetch(
        conn,
        GAPS,
        {
            "exchange": exchange,
            "symbol": symbol,
            "since": _aware("since", since),
            "unfilled_only": unfilled_only,
            "limit": _limit(limit),
        },
    )


def latest_indicators(
    conn: psycopg.Connection[Any], exchange: str, symbol: str, timeframe: str, at: datetime | None = None
) -> list[Row]:
    """The newest value of every (indicator, output) of a series stamped at or before ``at`` (default:
    the newest), sorted by indicator and output."""
    return _fetch(
        conn,
        LATEST_INDICATORS,
        {
            "exchange": exchange,
            "symbol": symbol,
            "timeframe": check_timeframe(timeframe),
            "at": _aware("at", at),
        },
    )


def recent_signals(
    conn: psycopg.Connection[Any],
    exchange: str,
    symbol: str,
    timeframe: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[Row]:
    """Signals of a series (one timeframe, or all), stamped after ``since``; newest first."""
    return _fetch(
        conn,
        RECENT_SIGNALS,
        {
            "exchange": exchange,
            "symbol": symbol,
            "timeframe": None if timeframe is None else check_timeframe(timeframe),
            "since": _aware("since", since),
            "limit": _limit(limit),
        },
    )


def symbols(conn: psycopg.Connection[Any], exchange: str) -> list[Row]:
    """The symbols of ``exchange`` that have 1m candles, sorted."""
    return _fetch(conn, SYMBOLS, {"exchange": exchange})


def collector_health(conn: psycopg.Connection[Any]) -> list[Row]:
    """The latest health snapshot of each collector (table ``collector_health``), by collector name;
    empty when the table does not exist yet. A row older than ``HEALTH_EXPIRES_AFTER`` (30 s,
    connectors/live_items.py) is not current: its collector is not reporting."""
    if not _fetch(conn, COLLECTOR_HEALTH_EXISTS, {})[0]["present"]:
        return []
    return _fetch(conn, COLLECTOR_HEALTH, {})
