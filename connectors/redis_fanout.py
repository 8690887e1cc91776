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

The wire format is connectors/redis_codec.py; clients read with connectors/redis_reader.py.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from redis.backoff import NoBackoff
from redis.retry import Retry

from connectors.metrics import count_redis_dropped
from connectors.redis_codec import LiveItem, encode, health_latest_key, payload_of
from market.health import HEALTH_EXPIRES_AFTER

__all__ = ["FanoutStats", "RedisFanout", "RedisSink", "StreamBounds"]

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
    bots: int = 10_000
    approximate: bool = True
    """``MAXLEN ~`` (Redis trims whole nodes, cheap; the length may exceed N by up to ~100) or exact."""

    def for_item(self, kind: str, timeframe: str | None) -> int:
        if kind == "candle":
            return self.candles.get(timeframe or "", self.candles_default)
        return int(
            getattr(self, {"indicator": "indicators", "signal": "signals", "bot": "bots"}.get(kind, kind))
        )


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
            pipe.xadd(
                channel,
                {"data": data},
                maxlen=self.bounds.for_item(kind, payload.get("timeframe")),
                approximate=self.bounds.approximate,
            )
            if kind == "health":
                pipe.set(health_latest_key(payload["collector"]), data, ex=HEALTH_EXPIRES_AFTER)
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
                count_redis_dropped(kind)
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
        for kind, n in kinds.items():
            count_redis_dropped(kind, n)
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
