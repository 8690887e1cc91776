"""Writing the pipeline's output to PostgreSQL/TimescaleDB.

``DatabaseWriter`` takes batches of mixed items (trades, final 1m candles, late trades, rejects) and
writes each batch in **one transaction**: trades by COPY into a temporary table then
``INSERT ... ON CONFLICT DO NOTHING``; candles as upserts on their key; late trades and rejects with
``ON CONFLICT DO NOTHING``. Every write is idempotent, so re-delivery changes nothing.

Delivery guarantee: at least once, made effectively exactly once by the idempotent writes. When the
database is unreachable the batch is written to a spool directory on disk (fsynced) and the call
returns at once, so the flow keeps ingesting; spooled batches are retried, oldest first, with
exponential backoff, and written when the database returns. Memory stays bounded (the spool is on
disk); spooled batches and rows are counted and logged. A batch the database refuses as invalid
(a constraint or data error: a bug, not an outage) is moved to ``spool/rejected/`` and logged as an
error instead of blocking the others.

``DatabaseSink`` is the Bytewax adapter: one writer (one connection) per worker.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from psycopg.types.json import Jsonb

from connectors.okx.events import Gap
from market.types import Candle, IndicatorValue, Rejected, Signal, Trade, TradeBatch
from market.windowing import LateTrade

log = logging.getLogger(__name__)

StoredItem = Trade | TradeBatch | Candle | LateTrade | Rejected | IndicatorValue | Signal | Gap

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
_PLAIN_WORDS = frozenset({"okx", "tape", "ws", "rest"})
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_CANDLE_COLUMNS = (
    "exchange, symbol, time, open, high, low, close, volume, quote_volume,"
    " trade_count, vwap, first_trade_id, last_trade_id"
)
_TEMP_CANDLES = (
    f"CREATE TEMP TABLE IF NOT EXISTS _tcp_candles AS SELECT {_CANDLE_COLUMNS} FROM candles_1m WITH NO DATA"
)
# One statement per batch (not one per candle): statement-level triggers on candles_1m fire once.
_UPSERT_CANDLES = f"""
INSERT INTO candles_1m ({_CANDLE_COLUMNS}) SELECT {_CANDLE_COLUMNS} FROM _tcp_candles ORDER BY symbol, time
ON CONFLICT (exchange, symbol, time) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, quote_volume = EXCLUDED.quote_volume, trade_count = EXCLUDED.trade_count,
    vwap = EXCLUDED.vwap, first_trade_id = EXCLUDED.first_trade_id, last_trade_id = EXCLUDED.last_trade_id
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
    " ON CONFLICT (exchange, symbol, timeframe, indicator, output, time) DO UPDATE SET value = EXCLUDED.value"
)
_UPSERT_SIGNAL = """
INSERT INTO signals (exchange, symbol, timeframe, time, strategy, action, reason, values)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (exchange, symbol, timeframe, strategy, time) DO UPDATE SET
    action = EXCLUDED.action, reason = EXCLUDED.reason, values = EXCLUDED.values
"""
_INSERT_GAP = """
INSERT INTO gaps (exchange, symbol, from_trade_id, to_trade_id, from_time, to_time, filled, trades_backfilled,
                  reason, recovery_seconds, error, detected_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (exchange, symbol, from_trade_id, to_trade_id) DO NOTHING
"""
_INVALID_BATCH = (psycopg.errors.IntegrityError, psycopg.errors.DataError, psycopg.errors.ProgrammingError)


@dataclass
class WriterStats:
    """Counters of one writer, for logs and health."""

    batches_written: int = 0
    trades_inserted: int = 0
    trades_duplicate: int = 0
    candles_written: int = 0
    late_written: int = 0
    rejects_written: int = 0
    indicator_values_written: int = 0
    signals_written: int = 0
    gaps_written: int = 0
    write_failures: int = 0
    batches_spooled: int = 0
    batches_refused: int = 0
    last_error: str | None = None


class DatabaseWriter:
    """Batched, transactional, idempotent writes with a disk spool for outages."""

    def __init__(
        self,
        url: str,
        spool_dir: Path,
        *,
        connect_timeout: float = 5.0,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        self.url = url
        self.spool_dir = spool_dir
        self.connect_timeout = connect_timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.stats = WriterStats()
        self._conn: psycopg.Connection | None = None
        self._retry_delay = retry_initial
        self._next_attempt = 0.0
        self._seq = 0
        spool_dir.mkdir(parents=True, exist_ok=True)

    # -- public -----------------------------------------------------------------------------------
    def write(self, items: Sequence[StoredItem]) -> None:
        """Write one batch in one transaction, or spool it if the database is unavailable."""
        if not items and not self.pending_batches():
            return
        if time.monotonic() < self._next_attempt:
            self._spool(items)
            return
        if not self._drain_spool():
            self._spool(items)
            return
        if items and not self._try_write(items):
            self._spool(items)

    def flush(self, timeout: float = 30.0) -> bool:
        """Try to write everything spooled, waiting out the backoff up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.pending_batches():
            if time.monotonic() >= self._next_attempt and self._drain_spool():
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.1, max(0.0, self._next_attempt - time.monotonic())))
        return True

    def pending_batches(self) -> list[Path]:
        return sorted(self.spool_dir.glob("*.batch"))

    def close(self) -> None:
        if self.pending_batches():
            self.flush(timeout=5.0)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        pending = self.pending_batches()
        if pending:
            log.warning("%d batch(es) remain spooled in %s; they are written on the next start",
                        len(pending), self.spool_dir)

    # -- writing ----------------------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, connect_timeout=int(max(1, self.connect_timeout)))
        return self._conn

    def _try_write(self, items: Sequence[StoredItem]) -> bool:
        try:
            self._write_transaction(items)
        except _INVALID_BATCH as error:
            self._refuse(items, error)
            return True
        except psycopg.Error as error:
            self._failed(error)
            return False
        self._retry_delay = self.retry_initial
        return True

    def _write_transaction(self, items: Sequence[StoredItem]) -> None:
        trades = [i for i in items if isinstance(i, Trade)]
        batches = [i for i in items if isinstance(i, TradeBatch)]
        for batch in batches:
            trades.extend(batch.trades)
        candles = [i for i in items if isinstance(i, Candle)]
        late = [i for i in items if isinstance(i, LateTrade)]
        rejects = [i for i in items if isinstance(i, Rejected)]
        values = [i for i in items if isinstance(i, IndicatorValue)]
        signals = [i for i in items if isinstance(i, Signal)]
        gaps = [i for i in items if isinstance(i, Gap)]
        known = (candles, late, rejects, values, signals, gaps, batches)
        unknown = len(items) - sum(len(kind) for kind in known) - sum(isinstance(i, Trade) for i in items)
        if unknown:
            raise TypeError(f"{unknown} item(s) of a type the database sink does not store")
        for candle in candles:
            if candle.timeframe != "1m":
                raise ValueError(f"only 1m candles are stored, not {candle.timeframe} (those are rollups)")
        conn = self._connection()
        inserted = 0
        with conn.transaction(), conn.cursor() as cur:
            if trades:
                inserted = self._copy_trades(conn, cur, trades)
            if candles:
                cur.execute(_TEMP_CANDLES)
                cur.execute("TRUNCATE _tcp_candles")
                with cur.copy(f"COPY _tcp_candles ({_CANDLE_COLUMNS}) FROM STDIN") as copy:
                    for c in candles:
                        copy.write_row(_candle_row(c))
                cur.execute(_UPSERT_CANDLES)
            if late:
                cur.executemany(_INSERT_LATE, [_late_row(x) for x in late])
            if rejects:
                cur.executemany(_INSERT_REJECT, [_reject_row(r) for r in rejects])
            if values:
                cur.execute(_TEMP_INDICATORS)
                cur.execute("TRUNCATE _tcp_indicators")
                with cur.copy("COPY _tcp_indicators FROM STDIN") as copy:
                    for v in values:
                        for output, number in v.values.items():
                            copy.write_row(
                                (v.exchange, v.symbol, v.timeframe, v.time, v.indicator, output, number))
                cur.execute(_MERGE_INDICATORS)
            if signals:
                cur.executemany(_UPSERT_SIGNAL, [_signal_row(s) for s in signals])
            if gaps:
                cur.executemany(_INSERT_GAP, [_gap_row(g) for g in gaps])
        s = self.stats
        s.batches_written += 1
        s.trades_inserted += inserted
        s.trades_duplicate += len(trades) - inserted
        s.candles_written += len(candles)
        s.late_written += len(late)
        s.rejects_written += len(rejects)
        s.indicator_values_written += len(values)
        s.signals_written += len(signals)
        s.gaps_written += len(gaps)

    @staticmethod
    def _copy_trades(conn: psycopg.Connection, cur: psycopg.Cursor, trades: list[Trade]) -> int:
        """COPY straight into ``trades``; if the batch overlaps stored rows (a re-delivery), redo it
        through a temporary table and ``ON CONFLICT DO NOTHING``. Returns the rows inserted."""
        text = _copy_text(trades)
        try:
            with conn.transaction():  # a savepoint: a conflict undoes only this attempt
                with cur.copy(f"COPY trades ({_TRADE_COLUMNS}) FROM STDIN") as copy:
                    copy.write(text)
            return len(trades)
        except psycopg.errors.UniqueViolation:
            pass
        cur.execute(_TEMP_TRADES)
        cur.execute("TRUNCATE _tcp_trades")
        with cur.copy(f"COPY _tcp_trades ({_TRADE_COLUMNS}) FROM STDIN") as copy:
            copy.write(text)
        cur.execute(_MERGE_TRADES)
        return max(cur.rowcount, 0)

    def _failed(self, error: psycopg.Error) -> None:
        self.stats.write_failures += 1
        self.stats.last_error = f"{type(error).__name__}: {error}".strip()
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
        self._next_attempt = time.monotonic() + self._retry_delay
        log.warning("database write failed (%s); retrying in %.1f s",
                    self.stats.last_error, self._retry_delay)
        self._retry_delay = min(self._retry_delay * 2, self.retry_max)

    def _refuse(self, items: Sequence[StoredItem], error: psycopg.Error) -> None:
        self.stats.batches_refused += 1
        self.stats.last_error = f"{type(error).__name__}: {error}".strip()
        path = self._dump(items, self.spool_dir / "rejected")
        log.error("database refused a batch as invalid (%s); kept in %s", self.stats.last_error, path)

    # -- spool ------------------------------------------------------------------------------------
    def _spool(self, items: Sequence[StoredItem]) -> None:
        if not items:
            return
        path = self._dump(items, self.spool_dir)
        self.stats.batches_spooled += 1
        log.info("spooled %d item(s) to %s (%d batch(es) waiting)", len(items), path.name,
                 len(self.pending_batches()))

    def _dump(self, items: Sequence[StoredItem], directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        path = directory / f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.batch"
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            pickle.dump(list(items), handle, protocol=pickle.HIGHEST_PROTOCOL)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.rename(path)
        return path

    def _drain_spool(self) -> bool:
        """Write spooled batches oldest first; False if the database is still unavailable."""
        for path in self.pending_batches():
            with path.open("rb") as handle:
                items = pickle.load(handle)
            if not self._try_write(items):
                return False
            path.unlink()
            log.info("wrote spooled batch %s (%d item(s))", path.name, len(items))
        return True


def _copy_field(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _copy_text(trades: list[Trade]) -> str:
    """Trades as COPY text rows; formatting here is ~2x faster than per-value adaptation."""
    lines = []
    plain = _PLAIN_WORDS
    for t in trades:
        symbol = t.symbol if t.symbol.isprintable() and "\\" not in t.symbol else _copy_field(t.symbol)
        exchange = t.exchange if t.exchange in plain else _copy_field(t.exchange)
        origin = t.origin if t.origin in plain else _copy_field(t.origin)
        lines.append(
            f"{exchange}\t{symbol}\t{t.trade_id}\t{t.ts_event.isoformat()}\t{t.price}\t{t.size}\t{t.side}\t"
            f"{_copy_field(t.ts_recv)}\t{t.count}\t{_copy_field(t.seq_id)}\t{_copy_field(t.source)}\t{origin}\n"
        )
    return "".join(lines)


def _candle_row(c: Candle) -> tuple[object, ...]:
    return (c.exchange, c.symbol, c.close_time, c.open, c.high, c.low, c.close, c.volume, c.quote_volume,
            c.trade_count, c.vwap, c.first_trade_id, c.last_trade_id)


def _late_row(x: LateTrade) -> tuple[object, ...]:
    t = x.trade
    return (t.exchange, t.symbol, t.trade_id, t.ts_event, t.price, t.size, t.side, t.ts_recv,
            x.candle_close, x.lateness)


def _gap_row(g: Gap) -> tuple[object, ...]:
    return (g.exchange, g.symbol, g.from_trade_id, g.to_trade_id, g.from_time, g.to_time, g.filled,
            g.trades_backfilled, g.reason, g.recovery_seconds, g.error, g.detected_at)


def _signal_row(s: Signal) -> tuple[object, ...]:
    return (s.exchange, s.symbol, s.timeframe, s.time, s.strategy, s.action, s.reason, Jsonb(dict(s.values)))


def _reject_row(r: Rejected) -> tuple[object, ...]:
    return (r.ts_recv, r.source, r.reason, r.raw, hashlib.sha256(r.raw).digest())


class _DatabasePartition(StatelessSinkPartition[StoredItem]):
    def __init__(self, writer: DatabaseWriter) -> None:
        self.writer = writer

    def write_batch(self, items: list[StoredItem]) -> None:
        self.writer.write(items)

    def close(self) -> None:
        self.writer.close()


class DatabaseSink(DynamicSink[StoredItem]):
    """Bytewax sink into the database; see the module docstring for the delivery guarantee."""

    def __init__(self, url: str, spool_dir: Path, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.spool_dir = spool_dir
        self.connect_timeout = connect_timeout

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DatabasePartition:
        spool = self.spool_dir / f"{step_id}-worker{worker_index}"
        return _DatabasePartition(DatabaseWriter(self.url, spool, connect_timeout=self.connect_timeout))


def iter_spooled(spool_dir: Path) -> Iterable[Path]:
    """Spooled batches under a sink's spool directory (all workers), oldest first."""
    return sorted(spool_dir.glob("*/*.batch"))
