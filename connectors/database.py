"""Writing the pipeline's output to PostgreSQL/TimescaleDB.

``DatabaseWriter`` takes batches of mixed items (trades, final 1m candles, late trades, rejects,
indicator values, signals, gaps), sorts each by table (``connectors.stored_batch.StoredBatch``) and
writes it in **one transaction**: trades by COPY (through a temporary table and ``ON CONFLICT DO
NOTHING`` when the batch overlaps stored rows); candles in one ``INSERT ... ON CONFLICT DO NOTHING``
statement per batch; everything else ``ON CONFLICT DO NOTHING``.

Final is final (TIME.md rule 3): a stored candle, indicator value or signal is never updated. Offering
the identical candle again changes nothing; a **different** candle for a stored key is a conflict: the
stored row stays, the offered one is kept in ``candle_conflicts`` (both as jsonb), logged as an error
and counted (``WriterStats.candle_conflicts``).

A row the database refuses (a constraint or data error, e.g. a count beyond ``integer``) does not sink
its batch: the batch is written again with each kind of row in a savepoint, halving the rows that fail
until the invalid ones are found; the valid rows are written and each invalid one becomes a ``rejects``
row (source ``database``, the database's reason, the row in the spool's JSON form), logged and counted.

Delivery guarantee: at least once, made effectively exactly once by the idempotent writes. When the
database is unreachable (or refuses the statements themselves, e.g. an unmigrated schema) the batch goes
to the spool (``connectors/spool.py``: on disk, tied to this database, bounded) and the call returns at
once, so the flow keeps ingesting; spooled batches are retried, oldest first, with exponential backoff.
When the spool is full, ``write`` raises ``SpoolFull`` and the flow stops with that one-line error; a
restart writes the spool first and resumes from the database.

``DatabaseSink`` is the Bytewax adapter: one writer (one connection) per worker.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors import database_writes as w
from connectors.database_writes import Row, Written
from connectors.metrics import observe_candle_rows, watch_spool
from connectors.spool import (
    MB,
    ServerIdentity,
    Spool,
    SpoolFull,
    SpoolUnreadable,
    StoredItem,
    encode_row,
    fingerprint,
)
from connectors.stored_batch import StoredBatch
from market.types import Candle, Trade

__all__ = ["DatabaseSink", "DatabaseWriter", "SpoolFull", "StoredItem", "WriterStats", "drain_spool"]

log = logging.getLogger(__name__)


@dataclass
class WriterStats:
    """Counters of one writer, for logs and health."""

    batches_written: int = 0
    trades_inserted: int = 0
    trades_duplicate: int = 0
    candles_written: int = 0
    candles_duplicate: int = 0
    candle_conflicts: int = 0
    late_written: int = 0
    rejects_written: int = 0
    rows_rejected: int = 0
    indicator_values_written: int = 0
    signals_written: int = 0
    gaps_written: int = 0
    write_failures: int = 0
    batches_spooled: int = 0
    batches_quarantined: int = 0
    last_error: str | None = None


class DatabaseWriter:
    """Batched, transactional, insert-only writes with a disk spool for outages."""

    def __init__(
        self,
        url: str,
        spool_dir: Path,
        *,
        connect_timeout: float = 5.0,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        spool_max_bytes: int = 1024 * MB,
        contract_values: Mapping[str, Decimal] | None = None,
    ) -> None:
        self.url = url
        self.contract_values = dict(contract_values or {})  # by symbol, stored with each 1m candle
        self.spool = Spool(spool_dir, url, max_bytes=spool_max_bytes)
        watch_spool(self.spool, spool_dir.name)
        self.connect_timeout = connect_timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.stats = WriterStats()
        self._conn: psycopg.Connection | None = None
        self._server: ServerIdentity | None = None
        self._retry_delay = retry_initial
        self._next_attempt = 0.0

    # -- public -----------------------------------------------------------------------------------
    def write(self, items: Sequence[StoredItem]) -> None:
        """Write one batch in one transaction, or spool it if the database is unavailable; raises
        ``SpoolFull`` when it can do neither."""
        if not items and not self.spool.pending():
            return
        if time.monotonic() < self._next_attempt or not self._drain_spool():
            self._spool(items)
        elif items and not self._try_write(items):
            self._spool(items)

    def flush(self, timeout: float = 30.0) -> bool:
        """Try to write everything spooled, waiting out the backoff up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.spool.pending():
            if time.monotonic() >= self._next_attempt and self._drain_spool():
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.1, max(0.0, self._next_attempt - time.monotonic())))
        return True

    def pending_batches(self) -> list[Path]:
        return self.spool.pending()

    def close(self) -> None:
        if self.spool.pending():
            self.flush(timeout=5.0)
        self.disconnect()
        pending = self.spool.pending()
        if pending:
            log.warning(
                "%d batch(es) remain spooled in %s; they are written on the next start",
                len(pending),
                self.spool.directory,
            )

    def disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- connection -------------------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, connect_timeout=int(max(1, self.connect_timeout)))
            self._server = _server_identity(self._conn)
            self.spool.remember(self._server)
        return self._conn

    def _try_write(self, items: Sequence[StoredItem]) -> bool:
        try:
            conn = self._connection()
            try:
                self._write_transaction(conn, items, careful=False)
            except w.ROW_ERRORS:  # some row is invalid: find it, write the others
                self._write_transaction(conn, items, careful=True)
        except psycopg.Error as error:
            self._failed(error)
            return False
        self._retry_delay = self.retry_initial
        return True

    def _failed(self, error: psycopg.Error) -> None:
        self.stats.write_failures += 1
        self.stats.last_error = " ".join(f"{type(error).__name__}: {error}".split())  # one line
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
        self._next_attempt = time.monotonic() + self._retry_delay
        level = logging.WARNING if isinstance(error, psycopg.OperationalError) else logging.ERROR
        log.log(
            level,
            "database write failed (%s); spooling, retrying in %.1f s",
            self.stats.last_error,
            self._retry_delay,
        )
        self._retry_delay = min(self._retry_delay * 2, self.retry_max)

    # -- writing ----------------------------------------------------------------------------------
    def _write_transaction(
        self, conn: psycopg.Connection, items: Sequence[StoredItem], *, careful: bool
    ) -> None:
        """One transaction; ``careful``: each kind in savepoints, invalid rows found and refused."""
        batch = StoredBatch.of(items)
        trades, candles = batch.trades, batch.candles
        refused: list[tuple[StoredItem, str]] = []

        def put(rows: list[Row], write: Callable[[list[Row]], Written]) -> Written:
            if not rows:
                return Written()
            return w.bisect(conn, rows, write, refused) if careful else write(rows)

        with conn.transaction(), conn.cursor() as cur:
            new_trades = put(trades, lambda rows: w.write_trades(conn, cur, rows))
            new_candles = put(candles, lambda rows: w.write_candles(cur, rows, self.contract_values))
            put(batch.late, lambda rows: w.write_late(cur, rows))
            put(batch.rejects, lambda rows: w.write_rejects(cur, rows))
            put(batch.values, lambda rows: w.write_indicators(cur, rows))
            put(batch.signals, lambda rows: w.write_signals(cur, rows))
            put(batch.gaps, lambda rows: w.write_gaps(cur, rows))
            if refused:
                w.write_rejects(cur, [w.as_reject(item, why) for item, why in refused])
        observe_candle_rows(candles, new_candles.inserted)
        s = self.stats
        bad_trades = sum(isinstance(i, Trade) for i, _ in refused)
        bad_candles = sum(isinstance(i, Candle) for i, _ in refused)
        s.batches_written += 1
        s.trades_inserted += new_trades.inserted
        s.trades_duplicate += len(trades) - new_trades.inserted - bad_trades
        s.candles_written += new_candles.inserted
        s.candle_conflicts += len(new_candles.conflicts)
        s.candles_duplicate += len(candles) - new_candles.inserted - len(new_candles.conflicts) - bad_candles
        s.late_written += len(batch.late)
        s.rejects_written += len(batch.rejects)
        s.indicator_values_written += len(batch.values)
        s.signals_written += len(batch.signals)
        s.gaps_written += len(batch.gaps)
        s.rows_rejected += len(refused)
        for exchange, symbol, close, stored, offered in new_candles.conflicts:
            log.error(
                "candle conflict %s %s %s: a different candle was offered for a stored final one; "
                "kept the stored one, recorded in candle_conflicts; stored %s offered %s",
                exchange,
                symbol,
                close,
                stored,
                offered,
            )
        for item, why in refused:
            row = encode_row(item)
            log.error(
                "the database refused a %s row (%s); recorded in rejects (source 'database'): %s",
                row["kind"],
                why,
                json.dumps(row),
            )

    # -- spool ------------------------------------------------------------------------------------
    def _spool(self, items: Sequence[StoredItem]) -> None:
        if not items:
            return
        try:
            path = self.spool.put(items, why=self.stats.last_error or "unreachable")
        except SpoolFull as full:
            log.error("%s", full)
            raise
        self.stats.batches_spooled += 1
        log.info(
            "spooled %d item(s) to %s (%d batch(es), %.1f MB waiting)",
            len(items),
            path.name,
            len(self.spool.pending()),
            self.spool.bytes_used / MB,
        )

    def _drain_spool(self) -> bool:
        """Write spooled batches oldest first; False if the database is still unavailable."""
        if not self.spool.pending():
            return True
        try:
            self._connection()
        except psycopg.Error as error:
            self._failed(error)
            return False
        for path in self.spool.pending():
            try:
                batch = self.spool.read(path)
            except SpoolUnreadable as error:
                self._quarantine(path, f"unreadable: {error}")
                continue
            except FileNotFoundError:  # written by another process draining the same spool
                self.spool.remove(path)
                continue
            if batch.server is not None and batch.server != self._server:
                assert self._server is not None
                self._quarantine(
                    path,
                    f"written for another database ({batch.server.describe()}); "
                    f"connected to {self._server.describe()}",
                )
                continue
            if not self._try_write(batch.items):
                return False
            self.spool.remove(path)
            log.info("wrote spooled batch %s (%d item(s))", path.name, len(batch.items))
        return True

    def _quarantine(self, path: Path, reason: str) -> None:
        try:
            moved = self.spool.quarantine(path, reason)
        except FileNotFoundError:
            self.spool.remove(path)
            return
        self.stats.batches_quarantined += 1
        log.error("spooled batch %s is not written (%s): moved to %s", path.name, reason, moved)


def _server_identity(conn: psycopg.Connection) -> ServerIdentity:
    """Which server and database the connection reached (see connectors/spool.py)."""
    with conn.transaction():
        try:
            with conn.transaction():
                system = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFunction):
            system = None
        database, migrated = conn.execute(
            "SELECT current_database(), to_regclass('schema_migrations') IS NOT NULL"
        ).fetchone() or ("", 0)
        stamp = None
        if migrated:
            stamp = conn.execute("SELECT applied_at FROM schema_migrations WHERE version = 1").fetchone()
    when = stamp[0].astimezone(UTC).isoformat() if stamp and isinstance(stamp[0], datetime) else None
    return ServerIdentity(system[0] if system else None, str(database), when)


def drain_spool(
    url: str, spool_dir: Path, *, connect_timeout: float, contract_values: Mapping[str, Decimal] | None = None
) -> None:
    """Write what earlier runs spooled for this database (every worker's spool under ``spool_dir``), so
    a flow starting now resumes after it; one attempt, with a warning if the database is unreachable."""
    for directory in sorted(spool_dir.glob(f"*/db-{fingerprint(url)}")):
        writer = DatabaseWriter(
            url, directory.parent, connect_timeout=connect_timeout, contract_values=contract_values
        )
        if not writer.flush(timeout=0):
            log.warning(
                "database %s unreachable at start (%s): %d spooled batch(es) wait in %s",
                writer.spool.where,
                writer.stats.last_error,
                len(writer.spool.pending()),
                directory,
            )
        writer.disconnect()


class _DatabasePartition(StatelessSinkPartition[StoredItem]):
    def __init__(self, writer: DatabaseWriter) -> None:
        self.writer = writer

    def write_batch(self, items: list[StoredItem]) -> None:
        self.writer.write(items)

    def close(self) -> None:
        self.writer.close()


class DatabaseSink(DynamicSink[StoredItem]):
    """Bytewax sink into the database; see the module docstring for the delivery guarantee.
    ``spool_max_mb`` is shared by the workers (each gets an equal part); ``contract_values`` are those the
    flow's candle builders use (``Settings.contract_values``), stored with each 1m candle."""

    def __init__(
        self,
        url: str,
        spool_dir: Path,
        connect_timeout: float = 5.0,
        spool_max_mb: int = 1024,
        contract_values: Mapping[str, Decimal] | None = None,
    ) -> None:
        self.url = url
        self.spool_dir = spool_dir
        self.connect_timeout = connect_timeout
        self.spool_max_mb = spool_max_mb
        self.contract_values = dict(contract_values or {})

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DatabasePartition:
        spool = self.spool_dir / f"{step_id}-worker{worker_index}"
        return _DatabasePartition(
            DatabaseWriter(
                self.url,
                spool,
                connect_timeout=self.connect_timeout,
                spool_max_bytes=self.spool_max_mb * MB // worker_count,
                contract_values=self.contract_values,
            )
        )
