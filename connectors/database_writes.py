"""The database sink's statements, one function per kind of row: each writes a list of rows with one
or two statements, insert-only and idempotent (``ON CONFLICT DO NOTHING``), and says what it did.

Candles are final (TIME.md rule 3): ``write_candles`` never updates a stored row; an offered candle that
differs from the stored one for its key is a conflict, kept in ``candle_conflicts`` and returned. Each 1m
candle is stored with the contract value its series' candles were built with (the rollups read it).

When the database refuses a row, ``bisect`` finds it (halving the rows in savepoints) so the others are
written, and ``as_reject`` turns it into a ``rejects`` row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

import psycopg
from psycopg.types.json import Jsonb

from connectors.okx.events import Gap
from connectors.spool import StoredItem, encode_row
from market.types import Candle, IndicatorValue, Rejected, Signal, Trade
from market.windowing import LateTrade

_TRADE_COLUMNS = (
    "exchange, symbol, trade_id, time, price, size, side, received_at,"
    " fill_count, seq_id, exch_source, origin"
)
_TEMP_TRADES = (
    f"CREATE TEMP TABLE IF NOT EXISTS _tcp_trades AS SELECT {_TRADE_COLUMNS} FROM trades WITH NO DATA"
)
_MERGE_TRADES = (
    f"INSERT INTO trades ({_TRADE_COLUMNS}) SELECT {_TRADE_COLUMNS} FROM _tcp_trades"
    " ON CONFLICT (exchange, symbol, time, trade_id) DO NOTHING"
)
_COPY_CHUNK = 1000
"""Trades per piece of a COPY: formatting the next overlaps the server storing this one."""
_PLAIN_WORDS = frozenset({"okx", "binance", "tape", "ws", "rest"})
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_CANDLE_VALUES = (
    "open, high, low, close, volume, quote_volume, trade_count, vwap, first_trade_id, last_trade_id,"
    " complete, contract_value"
)
_CANDLE_COLUMNS = f"exchange, symbol, time, {_CANDLE_VALUES}"
_TEMP_CANDLES = (
    f"CREATE TEMP TABLE IF NOT EXISTS _tcp_candles AS SELECT {_CANDLE_COLUMNS} FROM candles_1m WITH NO DATA"
)
# One statement per batch (not one per candle): statement-level triggers on candles_1m fire once.
_INSERT_CANDLES = (
    f"INSERT INTO candles_1m ({_CANDLE_COLUMNS}) SELECT {_CANDLE_COLUMNS} FROM _tcp_candles"
    " ORDER BY symbol, time ON CONFLICT (exchange, symbol, time) DO NOTHING"
)
# After the insert every offered key is stored: an offered candle that differs from its stored row is a
# conflict, kept aside (once per distinct value) and returned to be logged.
_CANDLE_CONFLICTS = f"""
WITH found AS (
    SELECT o.exchange, o.symbol, o.time,
           to_jsonb(s) - 'exchange' - 'symbol' - 'time' AS stored,
           to_jsonb(o) - 'exchange' - 'symbol' - 'time' AS offered
    FROM _tcp_candles o
    JOIN candles_1m s ON s.exchange = o.exchange AND s.symbol = o.symbol AND s.time = o.time
    WHERE ({", ".join(f"o.{c}" for c in _CANDLE_VALUES.split(", "))})
          IS DISTINCT FROM ({", ".join(f"s.{c}" for c in _CANDLE_VALUES.split(", "))})
), kept AS (
    INSERT INTO candle_conflicts (exchange, symbol, time, stored, offered)
    SELECT exchange, symbol, time, stored, offered FROM found
    ON CONFLICT ON CONSTRAINT candle_conflicts_key DO NOTHING
)
SELECT exchange, symbol, time, stored::text, offered::text FROM found
"""
_INSERT_LATE = """
INSERT INTO late_trades (exchange, symbol, trade_id, time, price, size, side, received_at,
                         candle_close, lateness)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (exchange, symbol, trade_id, time) DO NOTHING
"""
_INSERT_REJECT = """
INSERT INTO rejects (received_at, source, reason, raw, raw_digest) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (received_at, source, raw_digest) DO NOTHING
"""
_TEMP_INDICATORS = (
    "CREATE TEMP TABLE IF NOT EXISTS _tcp_indicators AS"
    " SELECT exchange, symbol, timeframe, time, indicator, output, value FROM indicators WITH NO DATA"
)
_MERGE_INDICATORS = (
    "INSERT INTO indicators (exchange, symbol, timeframe, time, indicator, output, value)"
    " SELECT exchange, symbol, timeframe, time, indicator, output, value FROM _tcp_indicators"
    " ON CONFLICT (exchange, symbol, timeframe, indicator, output, time) DO NOTHING"
)
_INSERT_SIGNAL = """
INSERT INTO signals (exchange, symbol, timeframe, time, strategy, action, reason, values)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (exchange, symbol, timeframe, strategy, time) DO NOTHING
"""
_INSERT_GAP = """
INSERT INTO gaps (exchange, symbol, from_trade_id, to_trade_id, from_time, to_time, filled, trades_backfilled,
                  reason, recovery_seconds, error, detected_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (exchange, symbol, from_trade_id, to_trade_id) DO NOTHING
"""

_ONE = Decimal(1)
ROW_ERRORS = (psycopg.errors.IntegrityError, psycopg.errors.DataError)
"""What the database says about a row it refuses (a constraint or a value out of range)."""
Row = TypeVar("Row", bound=StoredItem)


@dataclass
class Written:
    """What writing some rows did: rows inserted, candle conflicts found (key, stored, offered)."""

    inserted: int = 0
    conflicts: list[tuple[object, ...]] = field(default_factory=list)

    def __add__(self, other: Written) -> Written:
        return Written(self.inserted + other.inserted, self.conflicts + other.conflicts)


def write_trades(conn: psycopg.Connection, cur: psycopg.Cursor, trades: list[Trade]) -> Written:
    """COPY straight into ``trades``; if the batch overlaps stored rows (a re-delivery), redo it
    through a temporary table and ``ON CONFLICT DO NOTHING``. Returns the rows inserted.

    The rows are formatted and sent ``_COPY_CHUNK`` at a time, so the server stores each chunk while the
    next is being formatted."""
    chunks: list[str] = []
    try:
        with conn.transaction():  # a savepoint: a conflict undoes only this attempt
            with cur.copy(f"COPY trades ({_TRADE_COLUMNS}) FROM STDIN") as copy:
                for start in range(0, len(trades), _COPY_CHUNK):
                    chunks.append(_copy_text(trades[start : start + _COPY_CHUNK]))
                    copy.write(chunks[-1])
        return Written(len(trades))
    except psycopg.errors.UniqueViolation:
        pass
    text = "".join(chunks) + _copy_text(trades[len(chunks) * _COPY_CHUNK :])
    cur.execute(_TEMP_TRADES)
    cur.execute("TRUNCATE _tcp_trades")
    with cur.copy(f"COPY _tcp_trades ({_TRADE_COLUMNS}) FROM STDIN") as copy:
        copy.write(text)
    cur.execute(_MERGE_TRADES)
    return Written(max(cur.rowcount, 0))


def write_candles(
    cur: psycopg.Cursor, candles: list[Candle], contract_values: Mapping[str, Decimal] | None = None
) -> Written:
    """One insert for the batch (statement-level triggers fire once); conflicts kept and returned.
    ``contract_values``: by symbol, the contract value the candles were built with (default 1: spot)."""
    values = contract_values or {}
    cur.execute(_TEMP_CANDLES)
    cur.execute("TRUNCATE _tcp_candles")
    with cur.copy(f"COPY _tcp_candles ({_CANDLE_COLUMNS}) FROM STDIN") as copy:
        for c in candles:
            copy.write_row(
                (
                    c.exchange,
                    c.symbol,
                    c.close_time,
                    c.open,
                    c.high,
                    c.low,
                    c.close,
                    c.volume,
                    c.quote_volume,
                    c.trade_count,
                    c.vwap,
                    c.first_trade_id,
                    c.last_trade_id,
                    c.complete,
                    values.get(c.symbol, _ONE),
                )
            )
    cur.execute(_INSERT_CANDLES)
    inserted = max(cur.rowcount, 0)
    if inserted == len(candles):
        return Written(inserted)
    cur.execute(_CANDLE_CONFLICTS)
    return Written(inserted, list(cur.fetchall()))


def write_indicators(cur: psycopg.Cursor, values: list[IndicatorValue]) -> Written:
    cur.execute(_TEMP_INDICATORS)
    cur.execute("TRUNCATE _tcp_indicators")
    with cur.copy("COPY _tcp_indicators FROM STDIN") as copy:
        for v in values:
            for output, number in v.values.items():
                copy.write_row((v.exchange, v.symbol, v.timeframe, v.time, v.indicator, output, number))
    cur.execute(_MERGE_INDICATORS)
    return Written(max(cur.rowcount, 0))


def write_late(cur: psycopg.Cursor, late: list[LateTrade]) -> Written:
    cur.executemany(_INSERT_LATE, [_late_row(x) for x in late])
    return Written()


def write_rejects(cur: psycopg.Cursor, rejects: list[Rejected]) -> Written:
    cur.executemany(_INSERT_REJECT, [_reject_row(r) for r in rejects])
    return Written()


def write_signals(cur: psycopg.Cursor, signals: list[Signal]) -> Written:
    cur.executemany(_INSERT_SIGNAL, [_signal_row(x) for x in signals])
    return Written()


def write_gaps(cur: psycopg.Cursor, gaps: list[Gap]) -> Written:
    cur.executemany(_INSERT_GAP, [_gap_row(g) for g in gaps])
    return Written()


def _copy_field(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _copy_text(trades: list[Trade]) -> str:
    """Trades as COPY text rows; formatting here is ~2x faster than per-value adaptation. Consecutive
    trades mostly share their instrument and often their time: each is formatted once per run."""
    lines = []
    plain = _PLAIN_WORDS
    last_symbol = last_exchange = None
    last_ts: datetime | None = None
    head = stamp = ""
    for t in trades:
        if t.symbol is not last_symbol or t.exchange is not last_exchange:
            last_symbol, last_exchange = t.symbol, t.exchange
            symbol = t.symbol if t.symbol.isprintable() and "\\" not in t.symbol else _copy_field(t.symbol)
            exchange = t.exchange if t.exchange in plain else _copy_field(t.exchange)
            head = f"{exchange}\t{symbol}\t"
        if t.ts_event is not last_ts:
            last_ts = t.ts_event
            stamp = last_ts.isoformat()
        origin = t.origin if t.origin in plain else _copy_field(t.origin)
        recv = "\\N" if t.ts_recv is None else t.ts_recv.isoformat()
        seq = "\\N" if t.seq_id is None else str(t.seq_id)
        source = "\\N" if t.source is None else _copy_field(t.source)
        lines.append(
            f"{head}{t.trade_id}\t{stamp}\t{t.price}\t{t.size}\t{t.side}\t"
            f"{recv}\t{t.count}\t{seq}\t{source}\t{origin}\n"
        )
    return "".join(lines)


def _late_row(x: LateTrade) -> tuple[object, ...]:
    t = x.trade
    return (
        t.exchange,
        t.symbol,
        t.trade_id,
        t.ts_event,
        t.price,
        t.size,
        t.side,
        t.ts_recv,
        x.candle_close,
        x.lateness,
    )


def _gap_row(g: Gap) -> tuple[object, ...]:
    return (
        g.exchange,
        g.symbol,
        g.from_trade_id,
        g.to_trade_id,
        g.from_time,
        g.to_time,
        g.filled,
        g.trades_backfilled,
        g.reason,
        g.recovery_seconds,
        g.error,
        g.detected_at,
    )


def _signal_row(s: Signal) -> tuple[object, ...]:
    return (s.exchange, s.symbol, s.timeframe, s.time, s.strategy, s.action, s.reason, Jsonb(dict(s.values)))


def _reject_row(r: Rejected) -> tuple[object, ...]:
    return (r.ts_recv, r.source, r.reason, r.raw, hashlib.sha256(r.raw).digest())


def bisect(
    conn: psycopg.Connection,
    rows: list[Row],
    write: Callable[[list[Row]], Written],
    refused: list[tuple[StoredItem, str]],
) -> Written:
    """Write ``rows`` in a savepoint; if the database refuses one of them, write each half the same way,
    down to single rows, which are refused (added to ``refused`` with the reason)."""
    try:
        with conn.transaction():
            return write(rows)
    except ROW_ERRORS as error:
        if len(rows) == 1:
            refused.append((rows[0], f"{type(error).__name__}: {error.diag.message_primary or error}"))
            return Written()
        half = len(rows) // 2
        return bisect(conn, rows[:half], write, refused) + bisect(conn, rows[half:], write, refused)


def as_reject(item: StoredItem, why: str) -> Rejected:
    """A row the database refused, as a reject stamped with the item's own time (so re-delivering it is
    recorded once)."""
    raw = json.dumps(encode_row(item), separators=(",", ":")).encode()
    return Rejected(raw=raw, reason=why, ts_recv=_item_time(item), source="database")


def _item_time(item: StoredItem) -> datetime:
    if isinstance(item, Trade):
        return item.ts_recv or item.ts_event
    if isinstance(item, LateTrade):
        return item.trade.ts_recv or item.watermark
    if isinstance(item, Candle):
        return item.close_time
    if isinstance(item, Rejected):
        return item.ts_recv
    if isinstance(item, Gap):
        return item.detected_at
    if isinstance(item, IndicatorValue | Signal):
        return item.time
    raise TypeError(f"not a stored row: {type(item).__name__}")
