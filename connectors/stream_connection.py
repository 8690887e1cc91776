"""What one exchange websocket connection is built from: its options, the process-wide connect limiters
(one per exchange, each at the exchange's published rate) and the bounded handoff of items from the
network thread to the dataflow."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol

from connectors.exchange import ExchangeSpec
from market.sequencing import Limits


class ConnectLimiter:
    """At most ``rate`` new connections per ``per`` seconds, shared by every thread of the process."""

    def __init__(self, rate: int = 3, per: float = 1.0) -> None:
        self.rate = rate
        self.per = per
        self._lock = threading.Lock()
        self._slots: deque[float] = deque()

    def reserve(self) -> float:
        """Book the next free connection slot; returns how long to wait before using it (seconds)."""
        with self._lock:
            now = time.monotonic()
            start = now
            if len(self._slots) >= self.rate:
                start = max(now, self._slots[0] + self.per)
            self._slots.append(start)
            while len(self._slots) > self.rate:
                self._slots.popleft()
            return start - now


PROCESS_LIMITER = ConnectLimiter()
"""OKX's: 3 new connections per second per IP."""

_LIMITERS: dict[str, ConnectLimiter] = {"okx": PROCESS_LIMITER}
_LIMITERS_LOCK = threading.Lock()


def process_limiter(exchange: str, rate: int, per: float) -> ConnectLimiter:
    """The process-wide limiter of ``exchange``'s new connections (created at ``rate`` per ``per`` s)."""
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(exchange)
        if limiter is None:
            limiter = _LIMITERS[exchange] = ConnectLimiter(rate, per)
        return limiter


class Outbox:
    """Items from the network thread to the dataflow: a thread-safe FIFO that the network side stops
    filling while ``max_items`` are waiting (back-pressure: it stops reading the socket)."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._items: deque[object] = deque()  # append and popleft are atomic
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    def put(self, item: object) -> None:
        self._items.append(item)

    def take(self, limit: int) -> list[object]:
        """Up to ``limit`` items, oldest first; never waits. Wakes a network side waiting for room."""
        out: list[object] = []
        while len(out) < limit:
            try:
                out.append(self._items.popleft())
            except IndexError:
                break
        waiter = self._waiter
        if waiter is not None and not self.full:
            self._waiter = None
            loop, event = waiter
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop has ended
                pass
        return out

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.max_items

    async def room(self) -> None:
        """Wait until fewer than ``max_items`` items wait."""
        while self.full:
            event = asyncio.Event()
            self._waiter = (asyncio.get_running_loop(), event)
            if not self.full:  # drained between the check and the registration
                self._waiter = None
                return
            await event.wait()


class PingFrames:
    """Websocket ping frames, for exchanges without a text ping: one outstanding at a time; the
    websocket library takes its pong outside ``recv``, so the connection looks for it (:meth:`answered`)."""

    def __init__(self) -> None:
        self._waiter: asyncio.Future[float] | None = None

    @property
    def waiting(self) -> bool:
        return self._waiter is not None

    def reset(self) -> None:
        self._waiter = None

    async def send(self, ws: Pinging) -> None:
        if self._waiter is None:
            waiter = asyncio.ensure_future(await ws.ping())
            waiter.add_done_callback(_retrieved)  # a connection lost meanwhile fails it: not an error
            self._waiter = waiter

    def answered(self) -> bool:
        """Whether the outstanding ping's pong came (it is then no longer outstanding)."""
        if self._waiter is not None and self._waiter.done():
            self._waiter = None
            return True
        return False


class Pinging(Protocol):
    async def ping(self) -> Awaitable[float]: ...


def _retrieved(future: asyncio.Future[float]) -> None:
    if not future.cancelled():
        future.exception()


def exchange_limiter(spec: ExchangeSpec) -> ConnectLimiter:
    """The process-wide limiter of the exchange's new connections."""
    return process_limiter(spec.name, spec.limits.connections, spec.limits.connections_window)


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """Timings of one connection (seconds), REST limits and the feed's limits."""

    ping_interval: float = 1.0  # silence before a ping, repeated while silent (OKX closes at 30 s)
    pong_timeout: float = 20.0  # silence after the first unanswered ``ping`` before reconnecting
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    stable_after: float = 10.0  # a connection subscribed this long resets the backoff
    open_timeout: float = 10.0
    ack_timeout: float = 10.0
    health_interval: float = 5.0
    rest_timeout: float = 10.0
    rest_retries: int = 3
    rest_min_interval: float = 0.1
    backfill_max_pages: int = 50
    latest_limit: int = 20  # trades asked of ``GET /api/v5/market/trades`` after each subscription
    max_frame_bytes: int = 1024 * 1024  # larger frames are refused; 4x larger ones close the socket (1009)
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if not 0 < self.ping_interval < 30:
            raise ValueError(f"ping_interval must be within (0, 30) s, got {self.ping_interval}")
        for name in (
            "pong_timeout",
            "reconnect_initial",
            "reconnect_max",
            "open_timeout",
            "ack_timeout",
            "health_interval",
            "rest_timeout",
            "max_frame_bytes",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
