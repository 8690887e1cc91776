"""The database side of a backtest: reading a series' stored candles or trades, and writing a run.

Reads stream from a server-side cursor in batches (a year of 1m candles is never held as rows), oldest
first: candles of one timeframe from the public candle relation (``sql.statements.CANDLES_BETWEEN``),
trades from ``trades`` in (time, trade id) order without those recorded as late (so candles built from
them are the stored ones). ``write_run`` stores one run (its ``backtest_runs`` row, trades and equity
curve, the equity by binary ``COPY``) in one transaction: a run is there whole or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from connectors.resume import _candle, _trade
from market.backtest import BacktestTrade, EquityCurve
from market.timeframes import timeframe as lookup_timeframe
from market.types import Candle, Trade
from sql.statements import CANDLES_BETWEEN

BATCH = 10_000
"""Rows per batch read (and per item batch the flow moves)."""

_TRADES = """
SELECT t.trade_id, t.price, t.size, t.side, t.time, t.received_at, t.fill_count, t.seq_id, t.exch_source,
       t.origin
FROM trades t
WHERE t.exchange = %(exchange)s AND t.symbol = %(symbol)s AND t.time >= %(start)s AND t.time < %(end)s
  AND NOT EXISTS (SELECT 1 FROM late_trades l WHERE l.exchange = t.exchange AND l.symbol = t.symbol
                  AND l.trade_id = t.trade_id AND l.time = t.time)
ORDER BY t.time, t.trade_id
"""
_CANDLE_RANGE = """
SELECT min(time), max(time), count(*) FROM candles
WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND timeframe = %(timeframe)s
  AND time > %(start)s AND time <= %(end)s
"""
_TRADE_RANGE = """
SELECT min(time), max(time), count(*) FROM trades
WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND time >= %(start)s AND time < %(end)s
"""
_INSERT_RUN = """
INSERT INTO backtest_runs (exchange, symbol, timeframe, strategy, source, data_start, data_end, candles,
                           config, code_version, metrics)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
RETURNING run_id
"""
_INSERT_TRADE = """
INSERT INTO backtest_trades (run_id, entry_time, side, entry_price, exit_time, exit_price, quantity, pnl,
                             fees, is_open)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
_COPY_EQUITY = "COPY backtest_equity (run_id, time, close, cash, position, equity) FROM STDIN (FORMAT BINARY)"
_EQUITY_TYPES = ("int8", "timestamptz", "float8", "float8", "float8", "float8")

FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class StoredRange:
    """What is stored of a series in the asked range: the first and last time and how many rows."""

    first: datetime | None
    last: datetime | None
    rows: int


def candle_range(
    url: str, exchange: str, symbol: str, tf: str, start: datetime | None, end: datetime | None
) -> StoredRange:
    """The closes of the first and last stored candles of the series opening at or after ``start`` and
    closing at or before ``end``, and their count."""
    params = {"exchange": exchange, "symbol": symbol, "timeframe": tf, **_closes(tf, start, end)}
    return _range(url, _CANDLE_RANGE, params)


def trade_range(
    url: str, exchange: str, symbol: str, start: datetime | None, end: datetime | None
) -> StoredRange:
    """The times of the first and last stored trades in ``[start, end)`` and their count."""
    params = {"exchange": exchange, "symbol": symbol, "start": start or FAR_PAST, "end": end or FAR_FUTURE}
    return _range(url, _TRADE_RANGE, params)


def _range(url: str, query: str, params: Mapping[str, Any]) -> StoredRange:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return StoredRange(row[0], row[1], int(row[2]))


def _closes(tf: str, start: datetime | None, end: datetime | None) -> dict[str, datetime]:
    """``start``/``end`` for reads on candle closes: a candle opening at or after ``start`` closes after
    ``start + timeframe - 1 µs``."""
    length = lookup_timeframe(tf).length
    low = start + length - timedelta(microseconds=1) if start is not None else FAR_PAST
    return {"start": low, "end": end or FAR_FUTURE}


def candle_batches(
    url: str, exchange: str, symbol: str, tf: str, start: datetime | None, end: datetime | None
) -> Callable[[], Iterator[list[Candle]]]:
    """The series' final candles opening at or after ``start`` and closing at or before ``end``, oldest
    first, in batches (for ``connectors.memory.BatchSource``)."""
    statement = CANDLES_BETWEEN[tf]
    params = {"exchange": exchange, "symbol": symbol, "limit": None, **_closes(tf, start, end)}
    length = lookup_timeframe(tf)

    def batches() -> Iterator[list[Candle]]:
        for rows in _cursor_batches(url, statement.text, params):
            # CANDLE_COLUMNS: exchange, symbol, then the columns a stored candle is made of
            yield [_candle(exchange, symbol, row[2:], length) for row in rows]

    return batches


def trade_batches(
    url: str, exchange: str, symbol: str, start: datetime | None, end: datetime | None
) -> Callable[[], Iterator[list[Trade]]]:
    """The series' stored trades in ``[start, end)`` that were not late, in (time, trade id) order, in
    batches (for ``connectors.memory.BatchSource``)."""
    params = {"exchange": exchange, "symbol": symbol, "start": start or FAR_PAST, "end": end or FAR_FUTURE}

    def batches() -> Iterator[list[Trade]]:
        for rows in _cursor_batches(url, _TRADES, params):
            yield [_trade(exchange, symbol, row) for row in rows]

    return batches


def _cursor_batches(url: str, query: str, params: Mapping[str, Any]) -> Iterator[list[Any]]:
    with (
        psycopg.connect(url) as conn,
        conn.transaction(),
        conn.cursor(name="tcp_backtest_read") as cursor,
    ):
        conn.execute("SET LOCAL TIME ZONE 'UTC'")  # times come back in UTC (trades are not converted)
        cursor.itersize = BATCH
        cursor.execute(query, params)
        while rows := cursor.fetchmany(BATCH):
            yield rows


@dataclass(frozen=True)
class StoredRun:
    """One run as stored: its series, strategy, source, data range, config, code version and metrics."""

    exchange: str
    symbol: str
    timeframe: str
    strategy: str
    source: str
    data_start: datetime
    data_end: datetime
    candles: int
    config: Mapping[str, Any]
    code_version: str
    metrics: Mapping[str, Any]
    trades: Sequence[BacktestTrade]
    equity: EquityCurve


def write_run(url: str, run: StoredRun) -> int:
    """Store ``run`` in one transaction; its ``run_id``."""
    with psycopg.connect(url) as conn, conn.transaction(), conn.cursor() as cursor:
        cursor.execute(
            _INSERT_RUN,
            (
                run.exchange,
                run.symbol,
                run.timeframe,
                run.strategy,
                run.source,
                run.data_start,
                run.data_end,
                run.candles,
                json.dumps(run.config),
                run.code_version,
                json.dumps(run.metrics),
            ),
        )
        row = cursor.fetchone()
        assert row is not None
        run_id = int(row[0])
        cursor.executemany(
            _INSERT_TRADE,
            [
                (
                    run_id,
                    t.entry_time,
                    t.side,
                    t.entry_price,
                    t.exit_time,
                    t.exit_price,
                    t.quantity,
                    t.pnl,
                    t.fees,
                    t.open,
                )
                for t in run.trades
            ],
        )
        curve = run.equity
        with cursor.copy(_COPY_EQUITY) as copy:  # binary: exact doubles, ~8x faster than text rows
            copy.set_types(list(_EQUITY_TYPES))
            for row_values in zip(
                [run_id] * len(curve),
                curve.times,
                curve.closes,
                curve.cash,
                curve.positions,
                curve.equity,
                strict=True,
            ):
                copy.write_row(row_values)
    return run_id
