"""The live fan-out through Redis: final candles, the provisional candle, indicator values, signals,
late trades and collector health, published for dashboards and other live clients.

Every message goes to Redis pub/sub **and** to a bounded Redis Stream of the same name
(``XADD <channel> MAXLEN ~ N * data <json>``), so a client that connects late catches up from the
stream, then follows pub/sub. Channels (docs/redis.md has the payloads):

    tcp:candles:{exchange}:{symbol}:{timeframe}      final candles (every timeframe)
    tcp:provisional:{exchange}:{symbol}:{timeframe}  the in-progress candle, "provisional": true
    tcp:indicators:{exchange}:{symbol}:{timeframe}   indicator values of closed candles
    tcp:signals:{exchange}:{symbol}:{timeframe}      strategy signals
    tcp:late:{exchange}:{symbol}                     late trades (TIME.md rule 4)
    tcp:health                                       collector health snapshots
    tcp:health:latest:{collector}                    (a plain key) the latest snapshot per collector,
                                                     expiring 30 s after it was set

Payloads are JSON objects (orjson) with a ``kind``; times are ISO 8601 UTC with ``Z``; a candle is
labelled ``time`` = its close (TIME.md rule 2) and also carries ``open_time``; prices and sizes are
decimal strings (exact); indicator and signal values are JSON numbers.

Delivery guarantee: at least once while Redis is reachable (a Bytewax sink is at-least-once, so
after a recovery a message may repeat; consumers dedupe by (channel, ``time``)); at most once during
an outage: a batch that cannot be published is dropped and counted per kind, never retried or
buffered, so the flow never blocks and memory stays bounded. That is acceptable because the fan-out
is a live view; the database keeps the truth, and clients reload history from it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import redis
import redis.asyncio
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from redis.backoff import NoBackoff
from redis.retry import Retry

from connectors.live_items import (  # the channels and payloads are defined with the items
    ALL_PATTERNS,
    HEALTH_CHANNEL,
    HEALTH_EXPIRES_AFTER,
    CollectorHealth,
    HealthRules,
    LiveItem,
    assess_health,
    candle_channel,
    decode,
    encode,
    health_latest_key,
    indicator_channel,
    late_channel,
    payload_of,
    provisional_channel,
    signal_channel,
)

__all__ = [
    "ALL_PATTERNS",
    "HEALTH_CHANNEL",
    "FanoutStats",
    "HealthReporter",
    "LiveItem",
    "LiveMessage",
    "RedisFanout",
    "RedisLiveReader",
    "RedisSink",
    "StreamBounds",
    "Subscription",
    "candle_channel",
    "decode",
    "health_latest_key",
    "indicator_channel",
    "late_channel",
    "payload_of",
    "provisional_channel",
    "signal_channel",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamBounds:
    """Approximate maximum length of each stream (``MAXLEN ~``), per kind and, for candles, timeframe."""

    candles: Mapping[str, int] = field(
        default_factory=lambda: {
            "1m": 10_000,
            "5m": 5_000,
            "15m": 3_000,
            "1h": 2_000,
            "4h": 1_000,
            "1d": 1_000,
        }
    )
    candles_default: int = 1_000
    provisional: int = 100
    indicators: int = 10_000
    signals: int = 2_000
    late: int = 2_000
    health: int = 1_000
    approximate: bool = True
    """``MAXLEN ~`` (Redis trims whole nodes, cheap; the length may exceed N by up to ~100) or exact."""

    def for_item(self, kind: str, timeframe: str | None) -> int:
        if kind == "candle":
            return self.candles.get(timeframe or "", self.candles_default)
        return int(getattr(self, {"indicator": "indicators", "signal": "signals"}.get(kind, kind)))


# -- publishing -----------------------------------------------------------------------------------
@dataclass
class FanoutStats:
    """Counters of one publisher, per kind, for logs and health."""

    published: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    pipelines: int = 0
    failures: int = 0
    reconnects: int = 0
    last_error: str | None = None


class RedisFanout:
    """Publishes batches of live items, each batch in one pipeline; never raises on a Redis outage."""

    def __init__(
        self,
        url: str,
        bounds: StreamBounds | None = None,
        *,
        connect_timeout: float = 1.0,
        socket_timeout: float = 2.0,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        log_interval: float = 30.0,
    ) -> None:
        self.url = url
        self.bounds = bounds or StreamBounds()
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.log_interval = log_interval
        self.stats = FanoutStats()
        self._client: redis.Redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
            client_name="tcp-fanout",
        )
        self._retry_delay = retry_initial
        self._next_attempt = 0.0
        self._down_since: float | None = None
        self._last_log = float("-inf")
        self._dropped_since_log = 0

    def connect(self) -> bool:
        """Open the connection now (PING); False (logged, not raised) if Redis is unreachable."""
        try:
            self._client.ping()
        except (redis.RedisError, OSError) as error:
            self._failed(error, Counter())
            return False
        return True

    def publish(self, items: Iterable[LiveItem]) -> int:
        """Publish one batch in one pipeline; returns how many items were published (the rest dropped)."""
        prepared: list[tuple[str, int]] = []
        pipe = self._client.pipeline(transaction=False)
        for item in items:
            kind, channel, payload = payload_of(item)
            data = encode(payload)
            pipe.publish(channel, data)
            timeframe = getattr(item, "timeframe", None)
            pipe.xadd(
                channel,
                {"data": data},
                maxlen=self.bounds.for_item(kind, timeframe),
                approximate=self.bounds.approximate,
            )
            if isinstance(item, CollectorHealth):
                pipe.set(health_latest_key(item.collector), data, ex=HEALTH_EXPIRES_AFTER)
            prepared.append((kind, 3 if kind == "health" else 2))
        if not prepared:
            return 0
        kinds = Counter(kind for kind, _ in prepared)
        if time.monotonic() < self._next_attempt:
            pipe.reset()
            self._drop(kinds)
            return 0
        try:
            results = pipe.execute(raise_on_error=False)
        except (redis.RedisError, OSError) as error:
            self._failed(error, kinds)
            return 0
        finally:
            pipe.reset()
        self._recovered()
        self.stats.pipelines += 1
        published = 0
        position = 0
        for kind, n in prepared:
            errors = [r for r in results[position : position + n] if isinstance(r, Exception)]
            position += n
            if errors:
                self.stats.dropped[kind] += 1
                self.stats.last_error = f"{type(errors[0]).__name__}: {errors[0]}"
                self._warn(f"Redis refused a {kind} message ({self.stats.last_error})")
            else:
                self.stats.published[kind] += 1
                published += 1
        return published

    def close(self) -> None:
        self._client.close()
        if self.stats.dropped:
            log.info("Redis fan-out closed; dropped during outages: %s", dict(self.stats.dropped))

    def _drop(self, kinds: Counter[str]) -> None:
        self.stats.dropped.update(kinds)
        self._dropped_since_log += kinds.total()
        self._warn("Redis unreachable; dropping live messages")

    def _failed(self, error: Exception, kinds: Counter[str]) -> None:
        self.stats.failures += 1
        self.stats.last_error = f"{type(error).__name__}: {error}".strip()
        if self._down_since is None:
            self._down_since = time.monotonic()
        self._next_attempt = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self.retry_max)
        self._drop(kinds)

    def _recovered(self) -> None:
        if self._down_since is not None:
            self.stats.reconnects += 1
            log.info(
                "Redis reachable again after %.1f s; %d live message(s) were dropped meanwhile",
                time.monotonic() - self._down_since,
                self._dropped_since_log,
            )
            self._down_since = None
            self._dropped_since_log = 0
            self._last_log = float("-inf")
        self._retry_delay = self.retry_initial
        self._next_attempt = 0.0

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_log >= self.log_interval:
            self._last_log = now
            log.warning(
                "%s (last error: %s; dropped so far: %s; next attempt in %.1f s)",
                message,
                self.stats.last_error,
                dict(self.stats.dropped),
                max(0.0, self._next_attempt - now),
            )


class _RedisPartition(StatelessSinkPartition[LiveItem]):
    def __init__(self, fanout: RedisFanout) -> None:
        self.fanout = fanout

    def write_batch(self, items: list[LiveItem]) -> None:
        self.fanout.publish(items)

    def close(self) -> None:
        self.fanout.close()


class RedisSink(DynamicSink[LiveItem]):
    """Bytewax sink publishing live items to Redis (pub/sub + bounded streams), one publisher per worker.

    Delivery: at least once while Redis is up (consumers dedupe by (channel, ``time``)); at most once
    during an outage (dropped and counted, never blocking the flow). See the module docstring.
    """

    def __init__(self, url: str, bounds: StreamBounds | None = None) -> None:
        self.url = url
        self.bounds = bounds

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisPartition:
        fanout = RedisFanout(self.url, self.bounds)
        fanout.connect()
        return _RedisPartition(fanout)


class HealthReporter:
    """Publishes a collector's health every ``interval`` seconds from a daemon thread.

    ``snapshot()`` returns the collector's current counters; each is assessed (issues, is_healthy)
    against the previous one with ``assess_health`` before it is published and kept as the latest.
    """

    def __init__(
        self,
        url: str,
        snapshot: Callable[[], CollectorHealth],
        interval: float = 10.0,
        rules: HealthRules | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.interval = interval
        self.rules = rules or HealthRules()
        self.fanout = RedisFanout(url)
        self.last: CollectorHealth | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-health-reporter", daemon=True)

    def report(self) -> CollectorHealth:
        """Assess and publish one snapshot now."""
        health = assess_health(self.snapshot(), self.rules, self.last)
        self.fanout.publish([health])
        self.last = health
        return health

    def start(self) -> HealthReporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Publish a final snapshot, stop the thread and close the connection."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.fanout.close()

    def _run(self) -> None:
        while True:
            try:
                self.report()
            except Exception:  # a faulty snapshot must not end health reporting silently
                log.exception("health snapshot failed")
            if self._stop.wait(self.interval):
                break
        self.report()


# -- reading --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LiveMessage:
    """One decoded message; ``stream_id`` is set for messages read from a stream."""

    channel: str
    payload: dict[str, Any]
    stream_id: str | None = None


class Subscription:
    """A pattern subscription, already confirmed by Redis when constructed; iterate or ``get()``.

    ``close()`` may be called from another thread: the reading thread then stops within 0.25 s and
    closes the connection itself (a connection is never closed under a reader).
    """

    def __init__(self, client: redis.Redis, patterns: Sequence[str], timeout: float = 5.0) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=False)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._reading = False
        self._pubsub.psubscribe(*patterns)
        confirmed, deadline = 0, time.monotonic() + timeout
        while confirmed < len(patterns) and time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=0.1)
            if message is not None and message["type"] == "psubscribe":
                confirmed += 1
        if confirmed < len(patterns):
            self.close()
            raise TimeoutError(f"subscription to {list(patterns)} not confirmed within {timeout} s")

    def get(self, timeout: float = 1.0) -> LiveMessage | None:
        """The next message, or None if none arrives within ``timeout`` seconds (or once closed)."""
        with self._lock:
            if self._closed.is_set() or self._reading:
                return None
            self._reading = True
        try:
            deadline = time.monotonic() + timeout
            while not self._closed.is_set():
                wait = max(0.0, min(0.25, deadline - time.monotonic()))
                message = self._pubsub.get_message(timeout=wait)
                if message is not None and message["type"] in ("pmessage", "message"):
                    return LiveMessage(_text(message["channel"]), decode(message["data"]))
                if time.monotonic() >= deadline:
                    return None
            return None
        finally:
            with self._lock:
                self._reading = False
                if self._closed.is_set():
                    self._pubsub.close()

    def __iter__(self) -> Iterator[LiveMessage]:
        """Messages until ``close()``."""
        while not self._closed.is_set():
            message = self.get(timeout=0.25)
            if message is not None:
                yield message

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            if not self._reading:
                self._pubsub.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisLiveReader:
    """What a live client (the dashboard) needs: catch up from the streams, then follow pub/sub.

    Subscribe first, then catch up, and drop messages already seen by (channel, ``time``): nothing
    published in between is then missed.
    """

    def __init__(self, url: str, *, socket_timeout: float = 5.0) -> None:
        self.url = url
        self._client: redis.Redis = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )

    def catch_up(self, channel: str, count: int = 500) -> list[LiveMessage]:
        """The last ``count`` messages of ``channel``'s stream, oldest first."""
        entries: list[tuple[bytes, dict[bytes, bytes]]] = self._client.xrevrange(  # type: ignore[assignment]
            channel, count=count
        )
        return [
            LiveMessage(channel, decode(fields[b"data"]), _text(entry_id))
            for entry_id, fields in reversed(entries)
        ]

    def latest_health(self) -> dict[str, dict[str, Any]]:
        """The latest health snapshot of every collector, by collector name."""
        keys = sorted(self._client.scan_iter(match=health_latest_key("*"), count=100))
        values = self._client.mget(keys) if keys else []
        return {payload["collector"]: payload for payload in (decode(v) for v in values if v is not None)}

    def subscribe(self, patterns: Sequence[str] = ALL_PATTERNS, timeout: float = 5.0) -> Subscription:
        """A confirmed pattern subscription (e.g. ``["tcp:candles:okx:BTC-USDT:*"]``); close it after use."""
        return Subscription(self._client, patterns, timeout)

    async def asubscribe(self, patterns: Sequence[str] = ALL_PATTERNS) -> AsyncGenerator[LiveMessage, None]:
        """Messages for ``patterns`` as an async iterator (for an asyncio event loop, e.g. Panel's)."""
        client = redis.asyncio.Redis.from_url(self.url)
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.psubscribe(*patterns)
                async for message in pubsub.listen():
                    if message["type"] in ("pmessage", "message"):
                        yield LiveMessage(_text(message["channel"]), decode(message["data"]))
        finally:
            await client.aclose()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RedisLiveReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
