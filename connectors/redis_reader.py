"""Reading the live fan-out (docs/redis.md, "Reading"): what a live client such as the dashboard needs.

Imports only redis and the wire format (connectors/redis_codec.py), never the dataflow engine, so a
client loads nothing of the pipeline. ``RedisLiveReader`` catches up from the bounded streams and follows
pub/sub through a confirmed ``Subscription``; payloads come back decoded (``LiveMessage``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis

from connectors.redis_codec import ALL_PATTERNS, decode, health_latest_key

__all__ = ["LiveMessage", "RedisLiveReader", "Subscription"]


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

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RedisLiveReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
