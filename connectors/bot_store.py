"""The running bots' records in the database: their fills, equity and state (docs/control.md).

``BotWriter.write`` stores a batch of ``market.bots.BotProgress`` in **one transaction**: fills
(``bot_fills``) and equity points (``bot_equity``) ``ON CONFLICT DO NOTHING`` (a fill is keyed by the
open it filled at and its order there, an equity point by its close: the same candle processed again
writes nothing new), and each bot's runner (``bot_state``) upserted only when its last close is newer
than the stored one. A bot removed meanwhile is skipped (its rows went with it). So a batch written
twice changes nothing.

Delivery guarantee: at least once, effectively exactly once by the idempotent writes. When the database
fails (unreachable, or refusing the batch) the batch is kept and written with a later one, the attempts
backing off from 0.5 s to 30 s so an unreachable database does not hold the worker at every batch; the
failure is logged once, and its end. ``BotSink`` is the Bytewax adapter, one writer (one connection)
per worker.

``BotStates.runner`` reads a bot's stored runner back, for the flow to resume it after a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import psycopg
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from market.bots import BotProgress, BotRunner

__all__ = ["BotSink", "BotStates", "BotWriter"]

log = logging.getLogger(__name__)

_FILL = """
INSERT INTO bot_fills (bot_id, time, seq, signal_time, side, price, quantity, fee)
SELECT %s, %s, %s, %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM bots WHERE bot_id = %s)
ON CONFLICT DO NOTHING
"""
_EQUITY = """
INSERT INTO bot_equity (bot_id, time, close, cash, position, equity)
SELECT %s, %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM bots WHERE bot_id = %s)
ON CONFLICT DO NOTHING
"""
_STATE = """
INSERT INTO bot_state (bot_id, last_close, runner, updated_at)
SELECT %s, %s, %s, now() WHERE EXISTS (SELECT 1 FROM bots WHERE bot_id = %s)
ON CONFLICT (bot_id) DO UPDATE SET last_close = EXCLUDED.last_close, runner = EXCLUDED.runner,
                                   updated_at = EXCLUDED.updated_at
WHERE bot_state.last_close < EXCLUDED.last_close
"""
_RUNNER = "SELECT runner FROM bot_state WHERE bot_id = %s"
RETRY_INITIAL = 0.5
RETRY_MAX = 30.0
"""Longest wait (seconds) between attempts while the database is down: to write the kept batches (the
first again after ``RETRY_INITIAL``, doubling), or to read a bot's stored state."""


def _rows(batch: Iterable[BotProgress]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The batch's fill and equity rows (a fill's ``seq``: its order among the fills at the same open)."""
    fills: list[tuple[Any, ...]] = []
    equity: list[tuple[Any, ...]] = []
    for p in batch:
        seq, previous = 0, None
        for f in p.fills:
            seq = seq + 1 if f.time == previous else 0
            previous = f.time
            fills.append((p.bot_id, f.time, seq, f.signal_time, f.side, f.price, f.quantity, f.fee, p.bot_id))
        for e in p.equity:
            equity.append((p.bot_id, e.time, e.close, e.cash, e.position, e.equity, p.bot_id))
    return fills, equity


class BotWriter:
    """Writes batches of bot progress; keeps what failed and writes it with the next batch."""

    def __init__(self, url: str, connect_timeout: float = 5.0, retry_initial: float = RETRY_INITIAL) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.retry_initial = retry_initial
        self.pending: list[BotProgress] = []
        """Progress not yet stored (a failed batch waits here for the next)."""
        self.failing = False
        self._conn: psycopg.Connection[Any] | None = None
        self._next_attempt = 0.0
        self._delay = retry_initial

    def write(self, batch: list[BotProgress]) -> bool:
        """Store ``batch`` and anything kept from failed writes, in one transaction; False when the
        database failed, or failed lately and its next attempt is not due (everything is kept for a
        later call)."""
        self.pending.extend(batch)
        if not self.pending:
            return True
        if time.monotonic() < self._next_attempt:
            return False
        try:
            self._write(self.pending)
        except psycopg.Error as error:
            if self._conn is not None and (self._conn.closed or self._conn.broken):
                self._conn = None
            self._next_attempt = time.monotonic() + self._delay
            self._delay = min(self._delay * 2, RETRY_MAX)
            if not self.failing:
                log.warning(
                    "the bots' fills, equity and state cannot be written (%s); kept for the next batch",
                    " ".join(str(error).split()),
                )
                self.failing = True
            return False
        if self.failing:
            log.info("the bots' fills, equity and state are written again (%d kept)", len(self.pending))
            self.failing = False
        self.pending = []
        self._next_attempt, self._delay = 0.0, self.retry_initial
        return True

    def _write(self, batch: list[BotProgress]) -> None:
        if self._conn is None:
            self._conn = psycopg.connect(self.url, connect_timeout=int(self.connect_timeout), autocommit=True)
        conn = self._conn
        fills, equity = _rows(batch)
        newest: dict[int, BotProgress] = {}
        for p in batch:
            if p.bot_id not in newest or newest[p.bot_id].last_close < p.last_close:
                newest[p.bot_id] = p
        with conn.transaction(), conn.cursor() as cur:
            if fills:
                cur.executemany(_FILL, fills)
            if equity:
                cur.executemany(_EQUITY, equity)
            cur.executemany(_STATE, [(p.bot_id, p.last_close, p.runner, p.bot_id) for p in newest.values()])

    def close(self) -> None:
        if self.pending:
            self._next_attempt = 0.0  # a last attempt
            self.write([])
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _BotPartition(StatelessSinkPartition[BotProgress]):
    def __init__(self, writer: BotWriter) -> None:
        self.writer = writer

    def write_batch(self, items: list[BotProgress]) -> None:
        self.writer.write(items)

    def close(self) -> None:
        self.writer.close()


class BotSink(DynamicSink[BotProgress]):
    """The Bytewax adapter: one writer (one connection) per worker."""

    def __init__(self, url: str, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _BotPartition:
        return _BotPartition(BotWriter(self.url, self.connect_timeout))


class BotStates:
    """The bots' stored runners, read when the flow loads its bots."""

    def __init__(self, url: str, retry_initial: float = RETRY_INITIAL, connect_timeout: int = 5) -> None:
        self.url = url
        self.retry_initial = retry_initial
        self.connect_timeout = connect_timeout

    def runner(self, bot_id: int) -> BotRunner | None:
        """The bot's runner as last stored, or None if it has not processed a candle yet. While the
        database does not answer, waits for it (a bot resumed without its state would trade afresh)."""
        delay = self.retry_initial
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=self.connect_timeout, autocommit=True) as conn:
                    row = conn.execute(_RUNNER, (bot_id,)).fetchone()
                return None if row is None else BotRunner.loads(row[0])
            except psycopg.OperationalError as error:
                log.warning(
                    "bot %d: its stored state cannot be read (%s); retrying in %.1f s",
                    bot_id,
                    " ".join(str(error).split()),
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
