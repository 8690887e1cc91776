"""Named read queries: the one way the dashboard and users read the database (docs/sql.md, "Named queries").

Each function takes an open psycopg 3 connection (any engine: plain PostgreSQL or TimescaleDB) and
returns a list of dicts keyed by column name, oldest first unless said otherwise. The statements are
SQLAlchemy Core selects over ``sql.schema`` (``sql.statements``), compiled once to PostgreSQL text and
run on the given connection: one round trip per read, values as bound parameters. A timeframe is
checked against the six names and picks its relation from a fixed map, so no SQL text ever depends on
input. Times are timezone-aware UTC; candle and period ``time`` is the close (TIME.md rule 2).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from sql import statements
from sql.schema import TIMEFRAMES
from sql.statements import CANDLE_COLUMNS, Statement

__all__ = [
    "CANDLE_COLUMNS",
    "MAX_ROWS",
    "RELATIONS",
    "TIMEFRAMES",
    "Row",
    "candles_between",
    "check_timeframe",
    "collector_health",
    "gaps",
    "indicator_history",
    "late_trade_counts",
    "latest_candles",
    "latest_closes",
    "latest_indicators",
    "recent_signals",
    "reject_counts",
    "symbols",
    "user_indicators",
]

RELATIONS: dict[str, str] = {tf: f"candles_{tf}" for tf in TIMEFRAMES}
"""The public relation of each timeframe: candles_1m (a table) and the rollup views of migration 0008."""
MAX_ROWS = 100_000
Row = dict[str, Any]
_HEALTH_TABLE_SEEN: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
"""Connections that found ``collector_health`` (never dropped once created): read it without probing."""


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


def _fetch(conn: psycopg.Connection[Any], statement: Statement, params: dict[str, Any]) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(statement.text, params)
        return cursor.fetchall()


def latest_candles(
    conn: psycopg.Connection[Any], exchange: str, symbol: str, timeframe: str, limit: int = 500
) -> list[Row]:
    """The newest ``limit`` final candles of a series, oldest first."""
    query = statements.LATEST_CANDLES[check_timeframe(timeframe)]
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
    query = statements.CANDLES_BETWEEN[check_timeframe(timeframe)]
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
    query = statements.LATEST_CLOSES[check_timeframe(timeframe)]
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
        statements.late_trade_counts(exchange is not None, symbol is not None),
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
        statements.REJECT_COUNTS,
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
        statements.gap_rows(exchange is not None, symbol is not None, since is not None, unfilled_only),
        {
            "exchange": exchange,
            "symbol": symbol,
            "since": _aware("since", since),
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
        statements.latest_indicators(at is not None),
        {
            "exchange": exchange,
            "symbol": symbol,
            "timeframe": check_timeframe(timeframe),
            "at": _aware("at", at),
        },
    )


def indicator_history(
    conn: psycopg.Connection[Any],
    exchange: str,
    symbol: str,
    timeframe: str,
    labels: Sequence[str],
    start: datetime,
    end: datetime,
) -> list[Row]:
    """``time, indicator, output, value`` of the indicators labelled ``labels`` of a series, stamped in
    ``[start, end]``, oldest first (then by indicator and output); no labels, no rows and no read."""
    params = {
        "exchange": exchange,
        "symbol": symbol,
        "timeframe": check_timeframe(timeframe),
        "labels": list(labels),
        "start": _aware("start", start),
        "end": _aware("end", end),
    }
    return _fetch(conn, statements.INDICATOR_HISTORY, params) if labels else []


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
        statements.recent_signals(timeframe is not None, since is not None),
        {
            "exchange": exchange,
            "symbol": symbol,
            "timeframe": None if timeframe is None else check_timeframe(timeframe),
            "since": _aware("since", since),
            "limit": _limit(limit),
        },
    )


def user_indicators(conn: psycopg.Connection[Any], exchange: str, symbol: str, timeframe: str) -> list[Row]:
    """``label, entry`` of the user indicators of a series (``entry``: ``{"indicator", "label",
    "params"}`` as validated when it was added), in the order they were added."""
    params = {"exchange": exchange, "symbol": symbol, "timeframe": check_timeframe(timeframe)}
    return _fetch(conn, statements.USER_INDICATORS, params)


def symbols(conn: psycopg.Connection[Any], exchange: str) -> list[Row]:
    """The symbols of ``exchange`` that have 1m candles, sorted."""
    return _fetch(conn, statements.SYMBOLS, {"exchange": exchange})


def collector_health(conn: psycopg.Connection[Any]) -> list[Row]:
    """The latest health snapshot of each collector (table ``collector_health``), by collector name;
    empty when the table does not exist yet. A row older than ``HEALTH_EXPIRES_AFTER`` (30 s,
    market/health.py) is not current: its collector is not reporting."""
    if conn not in _HEALTH_TABLE_SEEN:
        if not _fetch(conn, statements.COLLECTOR_HEALTH_EXISTS, {})[0]["present"]:
            return []
        _HEALTH_TABLE_SEEN.add(conn)
    return _fetch(conn, statements.COLLECTOR_HEALTH, {})
