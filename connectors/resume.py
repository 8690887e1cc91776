"""Where each instrument's stored data ends: what the live flow continues from after any stop.

The database is the source of truth. ``load_stored_ends`` reads, for each instrument, the newest final
1m candle, the 1m candles of the longer timeframes' still-open intervals, the stored trades after that
candle (the windows that were open when the flow stopped, late trades excluded) and the newest stored
trade id, from which the source backfills over REST; ``load_followed_ends`` does so for the instruments
of every exchange followed. ``StoredHistory`` reads a series' stored candles,
for the indicator step to continue a series where it stood. See docs/reliability.md ("Resume").
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from market.timeframes import TF_1D, TF_1M, Timeframe, timeframe
from market.types import EPOCH, Candle, Trade
from market.windowing import ResumePoint

log = logging.getLogger(__name__)

_CANDLE = (
    "time, open, high, low, close, volume, quote_volume, trade_count, vwap, first_trade_id, last_trade_id,"
    " complete"
)
_LAST_CANDLE = (
    f"SELECT {_CANDLE} FROM candles_1m WHERE exchange = %s AND symbol = %s ORDER BY time DESC LIMIT 1"
)
_PERIOD_CANDLES = (
    f"SELECT {_CANDLE} FROM candles_1m WHERE exchange = %s AND symbol = %s AND time > %s AND time <= %s"
    " ORDER BY time"
)
_OPEN_TRADES = """
SELECT t.trade_id, t.price, t.size, t.side, t.time, t.received_at, t.fill_count, t.seq_id, t.exch_source,
       t.origin
FROM trades t
WHERE t.exchange = %s AND t.symbol = %s AND t.time >= %s
  AND NOT EXISTS (SELECT 1 FROM late_trades l WHERE l.exchange = t.exchange AND l.symbol = t.symbol
                                                AND l.trade_id = t.trade_id AND l.time = t.time)
ORDER BY t.trade_id
"""
# The newest trade id: ids grow with time, but a late trade may carry a newer id than the newest
# time's, so look over the last day of stored times (the key's index serves both lookups).
_LAST_TRADE = """
SELECT trade_id, time FROM trades
WHERE exchange = %(exchange)s AND symbol = %(symbol)s
  AND time >= (SELECT max(time) FROM trades WHERE exchange = %(exchange)s AND symbol = %(symbol)s)
              - interval '1 day'
ORDER BY trade_id DESC LIMIT 1
"""


_HISTORY = (
    f"SELECT {_CANDLE} FROM candles WHERE exchange = %s AND symbol = %s AND timeframe = %s"
    " AND time > %s AND time < %s ORDER BY time LIMIT %s"
)
_RANGE = (
    f"SELECT {_CANDLE} FROM candles WHERE exchange = %s AND symbol = %s AND timeframe = %s"
    " AND time > %s AND time <= %s ORDER BY time LIMIT %s"
)
HISTORY_PAGE = 5000
"""Candles per read of a series' history: pages follow each other by time (one round trip each, no
transaction), so a short history costs one round trip and a long one holds one page at a time."""
HISTORY_RETRY_MAX = 30.0
"""Longest wait (seconds) between attempts to read a series' stored history while the database is down."""
_NO_CANDLE_LOOKBACK = timedelta(hours=1)


@dataclass(frozen=True)
class StoredEnds:
    """Per instrument: where its candles continue, and the last stored trade (id, time in epoch ms).
    Keyed by symbol (one exchange's, :func:`load_stored_ends`) or ``exchange|symbol`` (several
    exchanges', :func:`load_followed_ends`)."""

    points: dict[str, ResumePoint] = field(default_factory=dict)
    last_trades: dict[str, tuple[int, int]] = field(default_factory=dict)

    def last_trades_of(self, exchange: str, default_exchange: str = "okx") -> dict[str, tuple[int, int]]:
        """The last stored trade of each of ``exchange``'s instruments, by symbol (entries keyed by
        symbol alone are ``default_exchange``'s)."""
        prefix = f"{exchange}|"
        return {
            key.removeprefix(prefix): value
            for key, value in self.last_trades.items()
            if key.startswith(prefix) or ("|" not in key and exchange == default_exchange)
        }


def load_followed_ends(url: str, followed: Mapping[str, Sequence[str]]) -> StoredEnds:
    """Where the stored data of each exchange's instruments end, keyed ``exchange|symbol``."""
    ends = StoredEnds()
    for exchange, instruments in followed.items():
        one = load_stored_ends(url, exchange, instruments)
        ends.points.update({f"{exchange}|{symbol}": point for symbol, point in one.points.items()})
        ends.last_trades.update({f"{exchange}|{symbol}": last for symbol, last in one.last_trades.items()})
    return ends


def load_stored_ends(url: str, exchange: str, instruments: Sequence[str]) -> StoredEnds:
    """Read where the stored data of each instrument ends (nothing for an instrument never stored)."""
    ends = StoredEnds()
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
        for symbol in instruments:
            cur.execute(_LAST_TRADE, {"exchange": exchange, "symbol": symbol})
            row = cur.fetchone()
            if row is None:
                continue
            ends.last_trades[symbol] = (int(row[0]), (row[1] - EPOCH) // timedelta(milliseconds=1))
            cur.execute(_LAST_CANDLE, (exchange, symbol))
            last = cur.fetchone()
            if last is None:  # trades but no candle yet: they are the open windows
                cur.execute(_OPEN_TRADES, (exchange, symbol, row[1] - _NO_CANDLE_LOOKBACK))
                trades = tuple(_trade(exchange, symbol, r) for r in cur.fetchall())
                ends.points[symbol] = ResumePoint(None, (), trades)
                continue
            last_candle = _candle(exchange, symbol, last)
            day_open = last_candle.close_time - (last_candle.close_time - EPOCH) % TF_1D.length
            cur.execute(_PERIOD_CANDLES, (exchange, symbol, day_open, last_candle.close_time))
            period = tuple(_candle(exchange, symbol, r) for r in cur.fetchall())
            cur.execute(_OPEN_TRADES, (exchange, symbol, last_candle.close_time))
            trades = tuple(_trade(exchange, symbol, r) for r in cur.fetchall())
            ends.points[symbol] = ResumePoint(last_candle, period, trades)
    return ends


class StoredHistory:
    """The stored final candles of a series, oldest first: before a given one (what an indicator step
    continuing a series after a restart replays to be in the state an uninterrupted run would have), or
    in a range of close times (what a bot replays for the candles it missed, what a user indicator's
    history is computed from)."""

    def __init__(self, url: str, retry_initial: float = 0.5) -> None:
        self.url = url
        self.retry_initial = retry_initial
        self._local = threading.local()
        """Each worker thread's connection, kept open between reads: the first candles of every series
        and timeframe come at the same instant, and a connection each would hold all of them up."""

    def __call__(self, first: Candle) -> Iterator[Candle]:
        """The candles, read in pages; while the database does not answer the series waits for it (an
        indicator computed without its history would differ from an uninterrupted run), retrying with
        backoff, and goes on after the last candle it had read."""
        return self._read(first.exchange, first.symbol, first.timeframe, EPOCH, first.close_time, _HISTORY)

    def range(
        self, exchange: str, symbol: str, timeframe: str, after: datetime | None, until: datetime
    ) -> Iterator[Candle]:
        """The stored final candles of a series with close in ``(after, until]`` (every stored one up to
        ``until`` when ``after`` is None), oldest first; read and retried like the whole history."""
        return self._read(exchange, symbol, timeframe, after or EPOCH, until, _RANGE)

    def _read(
        self, exchange: str, symbol: str, timeframe_name: str, after: datetime, until: datetime, query: str
    ) -> Iterator[Candle]:
        tf = timeframe(timeframe_name)
        delay = self.retry_initial
        while True:
            try:
                for row in self._rows(query, (exchange, symbol, timeframe_name), after, until):
                    candle = _candle(exchange, symbol, row, tf)
                    after = candle.close_time
                    yield candle
                return
            except psycopg.OperationalError as error:
                log.warning(
                    "the stored history of %s %s %s cannot be read (%s); its indicators wait for the "
                    "database, retrying in %.1f s",
                    symbol,
                    timeframe_name,
                    until.isoformat(),
                    " ".join(str(error).split()),
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, HISTORY_RETRY_MAX)

    def _rows(
        self, query: str, series: tuple[str, str, str], after: datetime, until: datetime
    ) -> Iterator[Sequence[Any]]:
        """The stored rows of the series after ``after`` and before ``until`` (or at it: ``_RANGE``)."""
        conn = self._connection()
        while True:
            try:
                rows = conn.execute(query, (*series, after, until, HISTORY_PAGE)).fetchall()
            except psycopg.OperationalError:
                conn.close()  # the next read connects again
                raise
            yield from rows
            if len(rows) < HISTORY_PAGE:
                return
            after = rows[-1][0]

    def _connection(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(self.url, connect_timeout=5, autocommit=True)
            self._local.conn = conn
            weakref.finalize(self, conn.close)  # closed with the reader (or at exit)
        return conn


def _candle(exchange: str, symbol: str, row: Sequence[Any], tf: Timeframe = TF_1M) -> Candle:
    close_time = row[0].astimezone(UTC)
    return Candle(exchange, symbol, tf.name, close_time - tf.length, close_time, *row[1:])


def _trade(exchange: str, symbol: str, row: Sequence[Any]) -> Trade:
    trade_id, price, size, side, time, received_at, count, seq_id, source, origin = row
    return Trade(
        exchange, symbol, int(trade_id), price, size, side, time, received_at, count, seq_id, source, origin
    )
