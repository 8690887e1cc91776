"""Data access of the dashboard: the database (read only) for history, Redis for the live view.

- ``ReadOnlyDatabase``: a psycopg pool whose every session is ``READ ONLY`` (the dashboard can never
  write); each read goes through a named query of ``sql.queries``.
- ``LiveHub``: one background thread per server process follows the Redis fan-out (pub/sub) and hands
  each message to the bounded queues of the sessions that asked for its channel; sessions drain their
  queue from a periodic callback, so no Redis I/O ever runs in a Panel callback. Redis is optional: a
  hub without a URL never connects and says why live updates are off (``off_reason``).
- ``candle_frame`` and friends turn rows and live payloads into pandas frames with UTC times.

Every failure to reach a server is raised as ``DatabaseUnavailable``/``RedisUnavailable`` carrying a
short message fit for the page; the details go to the log only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import pandas as pd
import psycopg
import redis
from psycopg_pool import ConnectionPool, PoolTimeout

from configs.selection import KNOWN_EXCHANGES
from connectors.redis_codec import candle_channel, indicator_channel, provisional_channel, signal_channel
from connectors.redis_reader import LiveMessage, RedisLiveReader
from sql import queries

log = logging.getLogger(__name__)

EXCHANGE = "okx"
"""The exchange of a series named by its symbol alone; another exchange's is ``exchange:SYMBOL``."""
LIVE_PATTERNS = ("tcp:candles:*", "tcp:provisional:*", "tcp:indicators:*", "tcp:signals:*")
CANDLE_FIELDS = ("open", "high", "low", "close", "volume")
NOT_CONFIGURED = "REDIS_URL is not set"
T = TypeVar("T")


def split_series(series: str) -> tuple[str, str]:
    """The (exchange, symbol) of a series as the instrument picker names it: ``binance:BTC-USDT``, or
    ``BTC-USDT`` for OKX's (as ``INSTRUMENTS`` does)."""
    exchange, sep, symbol = series.rpartition(":")
    return (exchange, symbol) if sep else (EXCHANGE, series)


def series_name(exchange: str, symbol: str) -> str:
    """How the instrument picker names a series (the inverse of :func:`split_series`)."""
    return symbol if exchange == EXCHANGE else f"{exchange}:{symbol}"


class DataUnavailable(Exception):
    """A server the dashboard reads from cannot be reached; ``str()`` is a message for the page."""


class DatabaseUnavailable(DataUnavailable):
    pass


class RedisUnavailable(DataUnavailable):
    pass


def _db_message(error: Exception) -> str:
    if isinstance(error, psycopg.errors.UndefinedTable):
        return "The database has no TCP schema yet: run `python3 tcp.py migrate` (or `up`)."
    if isinstance(error, (PoolTimeout, psycopg.OperationalError)):
        return "The database is unreachable; history and health counts will appear when it answers."
    return f"The database refused a read ({type(error).__name__})."


class ReadOnlyDatabase:
    """A pool of read-only sessions on the TCP database, and the reads the dashboard makes."""

    def __init__(self, url: str, *, max_size: int = 4, timeout: float = 3.0) -> None:
        self.timeout = timeout
        self._unreachable: tuple[float, str] | None = None
        """Until when (monotonic) reads fail at once, and their message."""
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=timeout,
            kwargs={
                "autocommit": True,
                "connect_timeout": max(1, round(timeout)),
                "application_name": "tcp-dashboard",
            },
            configure=self._read_only,
            check=ConnectionPool.check_connection,
            name="tcp-dashboard",
        )
        self._pool.open(wait=False)

    @staticmethod
    def _read_only(conn: psycopg.Connection[Any]) -> None:
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")

    def run(self, read: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``read(conn)`` on a pooled read-only connection; unreachable or failing -> DatabaseUnavailable.

        After the server was found unreachable, reads fail at once for ``timeout`` seconds rather than
        each waiting that long (a page makes several reads)."""
        if self._unreachable is not None and time.monotonic() < self._unreachable[0]:
            raise DatabaseUnavailable(self._unreachable[1])
        try:
            with self._pool.connection(timeout=self.timeout) as conn:
                return read(conn)
        except (PoolTimeout, psycopg.Error) as error:
            log.warning("database read failed: %s: %s", type(error).__name__, error)
            message = _db_message(error)
            if isinstance(error, (PoolTimeout, psycopg.OperationalError)):
                self._unreachable = (time.monotonic() + self.timeout, message)
            raise DatabaseUnavailable(message) from None

    def ping(self) -> float:
        """Round-trip time of ``SELECT 1`` in seconds."""
        start = time.perf_counter()
        self.run(lambda conn: conn.execute("SELECT 1").fetchone())
        return time.perf_counter() - start

    def candles(self, symbol: str, timeframe: str, limit: int) -> pd.DataFrame:
        series = split_series(symbol)
        return candle_frame(self.run(lambda c: queries.latest_candles(c, *series, timeframe, limit)))

    def indicator_history(
        self, symbol: str, timeframe: str, labels: Sequence[str], start: datetime, end: datetime
    ) -> pd.DataFrame:
        """Long rows ``time, indicator, output, value`` of the given labels stamped in ``[start, end]``."""
        queries.check_timeframe(timeframe)
        series = split_series(symbol)
        rows = (
            self.run(lambda c: queries.indicator_history(c, *series, timeframe, labels, start, end))
            if labels
            else []
        )
        frame = pd.DataFrame(rows, columns=["time", "indicator", "output", "value"])
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        frame["value"] = frame["value"].astype(float)
        return frame

    def user_indicators(self, symbol: str, timeframe: str) -> dict[str, dict[str, Any]]:
        """The user indicators of a series: label -> entry (``{"indicator", "label", "params"}``)."""
        rows = self.run(lambda c: queries.user_indicators(c, *split_series(symbol), timeframe))
        return {row["label"]: row["entry"] for row in rows}

    def signals(self, symbol: str, timeframe: str, since: datetime | None, limit: int = 1000) -> pd.DataFrame:
        """Signals of a series stamped after ``since``, oldest first."""
        rows = self.run(lambda c: queries.recent_signals(c, *split_series(symbol), timeframe, since, limit))
        return signal_frame(reversed(rows))

    def latest_closes(self, symbols: Sequence[str], timeframe: str = "1m") -> list[dict[str, Any]]:
        """For each series that has candles: its newest candle's close time, close and trade count."""
        wanted: dict[str, list[str]] = {}
        for series in symbols:
            exchange, symbol = split_series(series)
            wanted.setdefault(exchange, []).append(symbol)
        return [
            {**row, "symbol": series_name(exchange, row["symbol"])}
            for exchange, names in wanted.items()
            for row in self.run(
                partial(queries.latest_closes, exchange=exchange, symbols=names, timeframe=timeframe)
            )
        ]

    def newest_time(self, symbol: str, timeframe: str) -> datetime | None:
        """Close time of the newest stored candle of a series, None if it has none."""
        rows = self.latest_closes([symbol], timeframe)
        return rows[0]["time"] if rows else None

    def minutes_between(self, symbol: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Stored 1m candles closing in ``(start, end]``, oldest first."""
        return self.run(lambda c: queries.candles_between(c, *split_series(symbol), "1m", start, end, 1440))

    def symbols(self) -> list[str]:
        """The series that have stored 1m candles (:func:`series_name`), sorted by exchange and symbol."""
        return [
            series_name(exchange, row["symbol"])
            for exchange in KNOWN_EXCHANGES
            for row in self.run(partial(queries.symbols, exchange=exchange))
        ]

    def collector_health(self) -> list[dict[str, Any]]:
        """The latest snapshot row of each collector (``collector_health``), by name."""
        return self.run(queries.collector_health)

    def late_trades(self, start: datetime, end: datetime, period: timedelta) -> list[dict[str, Any]]:
        return self.run(lambda c: queries.late_trade_counts(c, start, end, period))

    def rejects(self, start: datetime, end: datetime, period: timedelta) -> list[dict[str, Any]]:
        return self.run(lambda c: queries.reject_counts(c, start, end, period))

    def gaps(self, since: datetime | None) -> list[dict[str, Any]]:
        return self.run(lambda c: queries.gaps(c, since=since, limit=10_000))

    def close(self) -> None:
        self._pool.close()


# -- frames -----------------------------------------------------------------------------------------
def candle_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Candle rows (database rows or live payloads) as a frame: ``time`` (the close, UTC), floats for
    charting, the exact decimals as text (``close_text`` ...), ``trade_count``; oldest first."""
    rows = list(rows)
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime([r["time"] for r in rows], utc=True),
            **{f: [float(r[f]) for r in rows] for f in CANDLE_FIELDS},
            **{f"{f}_text": [_decimal_text(r[f]) for r in rows] for f in CANDLE_FIELDS},
            "trade_count": pd.array([int(r["trade_count"]) for r in rows], dtype="int64"),
        }
    )
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


def signal_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Signal rows or payloads as ``time, strategy, action, reason``, in the given order."""
    rows = list(rows)
    return pd.DataFrame(
        {
            "time": pd.to_datetime([r["time"] for r in rows], utc=True),
            "strategy": [str(r["strategy"]) for r in rows],
            "action": [str(r["action"]) for r in rows],
            "reason": [str(r["reason"]) for r in rows],
        }
    )


def _decimal_text(value: Any) -> str:
    return format(value, "f") if isinstance(value, Decimal) else str(value)


# -- live -------------------------------------------------------------------------------------------
def series_channels(symbol: str, timeframe: str) -> dict[str, str]:
    """The live channels of one series, by kind."""
    return {
        "candle": candle_channel(*split_series(symbol), timeframe),
        "provisional": provisional_channel(*split_series(symbol), timeframe),
        "indicator": indicator_channel(*split_series(symbol), timeframe),
        "signal": signal_channel(*split_series(symbol), timeframe),
    }


@dataclass(eq=False)
class LiveQueue:
    """A session's bounded inbox of live messages for the channels it follows.

    Written by the hub thread, drained by the session (``deque`` appends and pops are thread-safe).
    When full, the oldest message is dropped and ``overflowed`` is set: the session then reloads.
    """

    channels: frozenset[str]
    maxlen: int = 5_000
    overflowed: bool = False
    _items: deque[LiveMessage] = field(init=False)

    def __post_init__(self) -> None:
        self._items = deque(maxlen=self.maxlen)

    def put(self, message: LiveMessage) -> None:
        if len(self._items) == self.maxlen:
            self.overflowed = True
        self._items.append(message)

    def drain(self) -> list[LiveMessage]:
        out = []
        while self._items:
            out.append(self._items.popleft())
        return out

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class LiveStatus:
    connected: bool = False
    generation: int = 0
    """Incremented on every (re)subscription: a session seeing it change reloads to fill what it missed."""
    messages: int = 0
    last_message_at: datetime | None = None
    last_error: str | None = None


class LiveHub:
    """Follows the Redis fan-out from one daemon thread and dispatches messages to session queues."""

    def __init__(self, url: str | None, *, retry_initial: float = 0.5, retry_max: float = 10.0) -> None:
        self.url = url
        self.reader = None if url is None else RedisLiveReader(url, socket_timeout=2.0)
        self.status = LiveStatus(last_error=None if url is not None else NOT_CONFIGURED)
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._queues: set[LiveQueue] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-dashboard-live", daemon=True)

    def start(self) -> LiveHub:
        if self.reader is not None:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        if self.reader is not None:
            self.reader.close()

    @property
    def configured(self) -> bool:
        """Whether a Redis URL was given (without one, live updates are off for good)."""
        return self.reader is not None

    def off_reason(self) -> str | None:
        """Why live updates are off (a sentence for the page), or None while following Redis."""
        if self.reader is None:
            return NOT_CONFIGURED
        if self.status.connected:
            return None
        if self.status.last_error is None:
            return "connecting to Redis"
        cause = f" ({self.status.last_error})" if self.status.last_error else ""
        return f"Redis is unreachable{cause}; retrying, live updates resume when it answers"

    def register(self, channels: Iterable[str], maxlen: int = 5_000) -> LiveQueue:
        queue = LiveQueue(frozenset(channels), maxlen)
        with self._lock:
            self._queues.add(queue)
        return queue

    def unregister(self, queue: LiveQueue) -> None:
        with self._lock:
            self._queues.discard(queue)

    @property
    def sessions(self) -> int:
        return len(self._queues)

    def catch_up(self, channel: str, count: int) -> list[LiveMessage]:
        """The newest ``count`` messages of a channel's stream, oldest first."""
        return self._redis(lambda: self._reader().catch_up(channel, count))

    def ping(self) -> float:
        start = time.perf_counter()
        self._redis(lambda: self._reader()._client.ping())
        return time.perf_counter() - start

    def _reader(self) -> RedisLiveReader:
        if self.reader is None:
            raise RedisUnavailable(f"Live updates are off: {NOT_CONFIGURED}.")
        return self.reader

    def _redis(self, call: Callable[[], T]) -> T:
        self._reader()
        try:
            return call()
        except (redis.RedisError, OSError) as error:
            log.warning("Redis read failed: %s: %s", type(error).__name__, error)
            raise RedisUnavailable("Redis is unreachable; live updates resume when it answers.") from None

    def dispatch(self, message: LiveMessage) -> None:
        self.status.messages += 1
        self.status.last_message_at = datetime.now(UTC)
        with self._lock:
            queues = [q for q in self._queues if message.channel in q.channels]
        for queue in queues:
            queue.put(message)

    def _run(self) -> None:
        delay, reader = self.retry_initial, self._reader()
        while not self._stop.is_set():
            try:
                with reader.subscribe(LIVE_PATTERNS, timeout=5.0) as subscription:
                    self.status.connected, self.status.last_error = True, None
                    self.status.generation += 1
                    delay = self.retry_initial
                    while not self._stop.is_set():
                        message = subscription.get(timeout=0.25)
                        if message is not None:
                            self.dispatch(message)
            except (redis.RedisError, OSError, TimeoutError) as error:
                if self.status.connected or self.status.last_error is None:
                    log.warning("live feed from Redis lost: %s: %s", type(error).__name__, error)
                self.status.connected = False
                self.status.last_error = f"{type(error).__name__}: {error}"
                self._stop.wait(delay)
                delay = min(delay * 2, self.retry_max)
        self.status.connected = False


@dataclass
class DashboardData:
    """What every session of one server process shares: the database pool and the live hub (which
    never connects when no Redis URL is given: the dashboard then runs on the database alone)."""

    db: ReadOnlyDatabase
    live: LiveHub

    @classmethod
    def connect(cls, database_url: str, redis_url: str | None, pool_max_size: int = 4) -> DashboardData:
        return cls(ReadOnlyDatabase(database_url, max_size=pool_max_size), LiveHub(redis_url).start())

    def close(self) -> None:
        self.live.stop()
        self.db.close()
