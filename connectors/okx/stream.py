"""The async side of the OKX trades source: one websocket connection's life for a set of instruments.

:class:`TradeStream` runs in an event loop and hands every output item to an ``emit`` callback:
connect (at most 3 new connections per second process-wide, :class:`ConnectLimiter`), subscribe
``trades`` for its instruments and check the per-arg acks, keep the link alive with OKX's text
``ping``/``pong``, reconnect with exponential backoff and jitter (at once on a 64008 notice), drop trade
ids already seen, and fill every hole in the id sequence from REST ``history-trades`` before the trade
that revealed it (see docs/okx-connectivity.md).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from connectors.okx.events import ConnectionHealth, ConnectionState, Gap, GapReason
from connectors.okx.parser import EXCHANGE, ErrorEvent, Notice, Pong, SubscriptionAck, parse_frame
from connectors.okx.rest import OkxRestClient
from market.types import Rejected, Trade, ms_from_utc, utc_from_ms

log = logging.getLogger(__name__)

Position = tuple[int, int | None]
"""Where an instrument stands: (last trade id emitted, its ``ts_event`` in epoch ms or None)."""


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


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """Timings of one connection (seconds) and REST backfill limits."""

    ping_interval: float = 20.0  # silence before sending ``ping`` (OKX closes after 30 s)
    pong_timeout: float = 20.0  # silence after ``ping`` before reconnecting
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    open_timeout: float = 10.0
    ack_timeout: float = 10.0
    health_interval: float = 5.0
    rest_timeout: float = 10.0
    rest_retries: int = 3
    rest_min_interval: float = 0.1
    backfill_max_pages: int = 50
    reorder_window: float = 0.5  # how long a push after a hole waits for the missing pushes before REST
    reorder_max: int = 1000  # held pushes per instrument before giving up waiting

    def __post_init__(self) -> None:
        if not 0 < self.ping_interval < 30:
            raise ValueError(f"ping_interval must be within (0, 30) s, got {self.ping_interval}")
        for name in ("pong_timeout", "reconnect_initial", "reconnect_max", "open_timeout", "ack_timeout",
                     "health_interval", "rest_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


class _Reconnect(Exception):
    def __init__(self, reason: str, immediate: bool = False) -> None:
        super().__init__(reason)
        self.immediate = immediate


class _Finished(Exception):
    """Every instrument reached its end trade id."""


def _now() -> datetime:
    return datetime.now(UTC)


class TradeStream:
    """One connection's worth of instruments; ``run`` until cancelled or every end id is reached."""

    def __init__(self, name: str, ws_url: str, rest_url: str, instruments: Sequence[str],
                 options: StreamOptions, emit: Callable[[object], None], *,
                 positions: Mapping[str, Position] | None = None, end_ids: Mapping[str, int] | None = None,
                 limiter: ConnectLimiter = PROCESS_LIMITER) -> None:
        self.name = name
        self.ws_url = ws_url
        self.instruments = tuple(instruments)
        self.options = options
        self._emit = emit
        self._limiter = limiter
        self.rest = OkxRestClient(rest_url, timeout=options.rest_timeout, retries=options.rest_retries,
                                  min_interval=options.rest_min_interval)
        self.positions: dict[str, Position] = dict(positions or {})
        self._resumed = set(self.positions)
        self.end_ids = dict(end_ids or {})
        self._past_end: set[str] = set()
        self._fresh: set[str] = set()
        self._held: dict[str, list[Trade]] = {}
        self._held_since: dict[str, float] = {}
        self._lost_at: float | None = None
        self._attempts = 0
        self._requests = 0
        self.refused: set[str] = set()
        # health
        self.state: ConnectionState = "connecting"
        self.connected_since: datetime | None = None
        self.last_message_at: datetime | None = None
        self.messages_received = 0
        self.trades_emitted = 0
        self.trades_backfilled = 0
        self.duplicates_dropped = 0
        self.reconnects = 0
        self.gaps_filled = 0
        self.gaps_unfilled = 0
        self.rejects = 0
        self.subscribe_errors = 0
        self.last_error: str | None = None
        self.pings_sent = 0
        self.pongs_received = 0

    def health(self) -> ConnectionHealth:
        return ConnectionHealth(
            EXCHANGE, self.name, self.instruments, _now(), self.state, self.connected_since,
            self.last_message_at, self.messages_received, self.trades_emitted, self.trades_backfilled,
            self.duplicates_dropped, self.reconnects, self.gaps_filled, self.gaps_unfilled, self.rejects,
            self.subscribe_errors, self.pings_sent, self.pongs_received, self.last_error)

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        health_task = loop.create_task(self._health_loop())
        try:
            while not self._finished():
                delay = self._limiter.reserve()
                if delay > 0:
                    await asyncio.sleep(delay)
                self.state = "connecting"
                immediate = False
                try:
                    await self._session()
                except _Finished:
                    break
                except _Reconnect as exc:
                    self._error(str(exc))
                    immediate = exc.immediate
                except (OSError, TimeoutError, WebSocketException) as exc:
                    self._error(f"{type(exc).__name__}: {exc}")
                if self.state == "subscribed" or self._lost_at is None:
                    self._lost_at = loop.time()  # failed attempts keep the time of the original loss
                self.connected_since = None
                self.reconnects += 1
                self.state = "backoff"
                if not immediate:
                    initial, ceiling = self.options.reconnect_initial, self.options.reconnect_max
                    ceiling = min(ceiling, initial * 2**self._attempts)
                    self._attempts += 1
                    await asyncio.sleep(ceiling * random.uniform(0.5, 1.0))
        finally:
            health_task.cancel()
            await asyncio.gather(health_task, return_exceptions=True)
            self.state = "stopped"
            self.connected_since = None
            self._emit(self.health())

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.health_interval)
            self._emit(self.health())

    def _error(self, text: str) -> None:
        self.last_error = text
        log.warning("okx %s: %s", self.name, text)

    def _finished(self) -> bool:
        if not self.end_ids:
            return False
        return all(inst in self._past_end or (self.positions.get(inst) or (-1, None))[0] >= end
                   for inst, end in self.end_ids.items())

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        options = self.options
        async with connect(self.ws_url, ping_interval=None, open_timeout=options.open_timeout,
                           close_timeout=min(1.0, options.pong_timeout), max_size=2**22) as ws:
            wanted = [inst for inst in self.instruments if inst not in self.refused]
            if not wanted:
                self._error(f"every instrument was refused: {sorted(self.refused)}; stopping")
                raise _Finished
            pending = set(wanted)
            batch_id = await self._subscribe(ws, wanted)
            singles: dict[str, str] = {}
            self._fresh = set(wanted)
            ack_deadline = loop.time() + options.ack_timeout
            self._held.clear()  # never emitted: the next connection's backfill covers them
            self._held_since.clear()
            while True:
                raw = await self._receive(ws)
                await self._flush_held(loop.time())
                if raw is None:
                    continue
                ts_recv = _now()
                self.messages_received += 1
                self.last_message_at = ts_recv
                result = parse_frame(raw, ts_recv)
                if isinstance(result, list):
                    for trade in result:
                        await self._on_trade(trade)
                elif isinstance(result, Rejected):
                    self.rejects += 1
                    self._emit(replace(result, source="okx-ws"))
                elif isinstance(result, SubscriptionAck):
                    if result.op == "subscribe" and result.channel == "trades":
                        pending.discard(result.inst_id or "")
                elif isinstance(result, ErrorEvent):
                    self.subscribe_errors += 1
                    self._error(f"error event {result.code}: {result.msg}")
                    if result.request_id == batch_id and len(wanted) > 1:
                        # One bad arg refuses the whole request: retry one by one to isolate it.
                        for inst in pending:
                            singles[await self._subscribe(ws, [inst])] = inst
                        ack_deadline = loop.time() + options.ack_timeout
                    elif result.request_id in singles or result.request_id == batch_id:
                        refused = singles.get(result.request_id or "") or wanted[0]
                        self.refused.add(refused)
                        pending.discard(refused)
                        if self.refused.issuperset(self.instruments):
                            self._error(f"every instrument was refused: {sorted(self.refused)}; stopping")
                            raise _Finished
                elif isinstance(result, Pong):
                    self.pongs_received += 1
                elif isinstance(result, Notice):
                    self._error(f"notice {result.code}: {result.msg}")
                    if result.code == "64008":
                        raise _Reconnect("64008 service-upgrade notice: reconnecting now", immediate=True)
                if pending and loop.time() > ack_deadline:
                    raise _Reconnect(f"no subscribe ack for {sorted(pending)} within {options.ack_timeout} s")
                if not pending and self.state != "subscribed":
                    self.state = "subscribed"
                    self.connected_since = _now()
                    self._attempts = 0

    async def _subscribe(self, ws: ClientConnection, instruments: Sequence[str]) -> str:
        self._requests += 1
        request_id = f"s{self._requests}"
        args = [{"channel": "trades", "instId": inst} for inst in instruments]
        await ws.send(orjson.dumps({"id": request_id, "op": "subscribe", "args": args}).decode())
        return request_id

    async def _receive(self, ws: ClientConnection) -> str | bytes | None:
        """The next frame; after ``ping_interval`` of silence send ``ping``, after ``pong_timeout`` more
        of silence give up on the connection (``recv`` is safe to cancel: nothing is lost). Returns None
        when a held push's reorder window expired first."""
        loop = asyncio.get_running_loop()
        ping_at = loop.time() + self.options.ping_interval
        held_until = min(self._held_since.values(), default=None)
        wake = ping_at if held_until is None else min(ping_at, held_until + self.options.reorder_window)
        try:
            async with asyncio.timeout_at(wake):
                return await ws.recv()
        except TimeoutError:
            if wake < ping_at:
                return None
        self.pings_sent += 1
        await ws.send("ping")
        try:
            async with asyncio.timeout(self.options.pong_timeout):
                return await ws.recv()
        except TimeoutError:
            raise _Reconnect(f"no pong or message within {self.options.pong_timeout} s after ping") from None

    # ------------------------------------------------------------------ trades
    def _out(self, trade: Trade) -> bool:
        end = self.end_ids.get(trade.symbol)
        if end is not None and trade.trade_id > end:
            self._past_end.add(trade.symbol)
            return False
        self.positions[trade.symbol] = (trade.trade_id, ms_from_utc(trade.ts_event))
        self.trades_emitted += 1
        self._emit(trade)
        return True

    async def _on_trade(self, trade: Trade) -> None:
        symbol = trade.symbol
        reason: GapReason = "sequence"
        if symbol in self._resumed:
            reason = "resume"
        elif symbol in self._fresh:
            reason = "reconnect"
        self._resumed.discard(symbol)
        self._fresh.discard(symbol)
        position = self.positions.get(symbol)
        if position is None:
            self._out(trade)
        elif trade.trade_id <= position[0]:
            self.duplicates_dropped += 1
        elif trade.trade_id - trade.count <= position[0]:
            self._out(trade)
            self._drain(symbol)
        elif reason == "sequence" and self.options.reorder_window > 0:
            self._hold(trade)
        else:
            await self._fill(trade, position, reason)
            self._out(trade)
            self._drain(symbol)
        if self._finished():
            raise _Finished

    def _hold(self, trade: Trade) -> None:
        """Park a push that follows a hole, in case the missing pushes arrive late (reordered)."""
        held = self._held.setdefault(trade.symbol, [])
        if any(t.trade_id == trade.trade_id for t in held):
            self.duplicates_dropped += 1
            return
        held.append(trade)
        held.sort(key=lambda t: t.trade_id)
        self._held_since.setdefault(trade.symbol, asyncio.get_running_loop().time())

    def _drain(self, symbol: str) -> None:
        """Emit held pushes that now continue the sequence."""
        held = self._held.get(symbol)
        while held:
            last_id = self.positions[symbol][0]
            trade = held[0]
            if trade.trade_id <= last_id:
                self.duplicates_dropped += 1
            elif trade.trade_id - trade.count <= last_id:
                self._out(trade)
            else:
                return
            held.pop(0)
        self._held.pop(symbol, None)
        self._held_since.pop(symbol, None)

    async def _flush_held(self, now: float) -> None:
        """Holes still open after ``reorder_window`` (or too many held pushes) are filled from REST."""
        for symbol in list(self._held):
            held = self._held[symbol]
            expired = now - self._held_since[symbol] >= self.options.reorder_window
            if held and (expired or len(held) >= self.options.reorder_max):
                trade = held.pop(0)
                await self._fill(trade, self.positions[symbol], "sequence")
                self._out(trade)
                self._drain(symbol)
                if self._finished():
                    raise _Finished

    async def _fill(self, trade: Trade, position: Position, reason: GapReason) -> None:
        """Backfill the ids between ``position`` and ``trade`` from REST, emit them, record the gap."""
        last_id, last_ms = position
        first_id = trade.trade_id - trade.count + 1
        result = await self.rest.backfill(trade.symbol, last_id, first_id,
                                          max_pages=self.options.backfill_max_pages)
        emitted = sum(self._out(backfilled) for backfilled in result.trades)
        self.trades_backfilled += emitted
        recovery: float | None = None
        if reason == "reconnect" and self._lost_at is not None:
            recovery = asyncio.get_running_loop().time() - self._lost_at
        if result.complete:
            self.gaps_filled += 1
        else:
            self.gaps_unfilled += 1
            self._error(f"unfilled gap {trade.symbol} ({last_id}, {first_id}): {len(result.trades)} trades "
                        f"backfilled, {result.error or 'REST history does not reach back far enough'}")
        self._emit(Gap(EXCHANGE, trade.symbol, last_id, first_id,
                       None if last_ms is None else utc_from_ms(last_ms), trade.ts_event, result.complete,
                       emitted, reason, _now(), recovery, result.error))
