"""A local Binance spot market-data server replaying trade tapes: websockets and REST on one port.

Websocket (Binance's "WebSocket Streams"): ``/ws/<stream>`` (raw events) and ``/stream?streams=a/b``
(events wrapped as ``{"stream":..,"data":..}``), and on either ``SUBSCRIBE`` / ``UNSUBSCRIBE`` /
``LIST_SUBSCRIPTIONS`` requests answered ``{"result":..,"id":..}``; ``<symbol>@aggTrade`` and
``<symbol>@trade`` streams. The server sends a ping frame every ``ping_interval`` seconds and closes a
connection whose pong is ``pong_timeout`` late; it closes every connection at ``max_age`` (Binance: 24
hours), any that sends more than 5 messages in a second (1008 "Too many requests") and any that falls
``max_queue`` events behind (1008 "slow consumer"). REST: see
:mod:`connectors.binance.simulator.rest`. Usable in-process::

    sim = BinanceSimulator(BinanceSimulatorConfig(tapes=(Path("tape.csv"),), speed=0))
    port = await sim.start()
    ...
    await sim.stop()
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from connectors.binance.simulator import rest
from connectors.binance.simulator.market import Market
from connectors.tape import merge_tapes, read_tape
from market.types import Trade, ms_from_utc

log = logging.getLogger("binance-simulator")
MESSAGES_PER_SECOND = 5
STREAM_KINDS = ("aggTrade", "trade")


@dataclass(frozen=True, slots=True)
class BinanceSimulatorConfig:
    """What to replay and how. ``port=0`` binds a free port; ``speed`` 0 plays as fast as possible."""

    tapes: tuple[Path, ...]
    host: str = "127.0.0.1"
    port: int = 0
    speed: float = 1.0
    rebase_now: bool = False  # shift tape times (by whole minutes) so the replay starts now
    wait_for_subscriber: bool = False  # hold the clock until the first subscription
    ping_interval: float = 20.0
    pong_timeout: float = 60.0
    max_age: float = 24 * 3600.0
    max_queue: int = 200_000
    throttle_every: int = 0  # fault: every n-th REST request is answered 429 with Retry-After
    continue_after: tuple[tuple[str, int, int], ...] = ()
    """Per instrument, the last trade (id, epoch ms) of an earlier run: the replay's ids continue from
    the id + 1 and (with ``rebase_now``) it starts now, after that trade."""
    drop_every: int = 0  # fault: every n-th trade is never pushed (REST has it)
    poison_every: int = 0  # fault: an unreadable aggTrade event after every n-th trade's
    retry_after: int = 1

    def __post_init__(self) -> None:
        if not self.tapes:
            raise ValueError("at least one tape is needed")
        for tape in self.tapes:
            if not Path(tape).is_file():
                raise ValueError(f"tape {tape} does not exist")
        if self.speed < 0:
            raise ValueError(f"speed must be >= 0, got {self.speed}")
        for name in ("ping_interval", "pong_timeout", "max_age"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.continue_after and not self.rebase_now:
            raise ValueError("continue_after needs rebase_now: the replay must come after the last trade")
        if self.rebase_now and self.wait_for_subscriber:
            raise ValueError("rebase_now anchors the clock at start; it cannot wait for a subscriber")


def continued(trades: list[Trade], after: Sequence[tuple[str, int, int]]) -> list[Trade]:
    """The trades with each continued instrument's ids moved to follow its last stored id."""
    firsts: dict[str, int] = {}
    for trade in trades:
        firsts.setdefault(trade.symbol, trade.trade_id)
    shifts = {inst: last + 1 - firsts[inst] for inst, last, _ in after if inst in firsts}
    if not any(shifts.values()):
        return trades
    return [dataclasses.replace(t, trade_id=t.trade_id + shifts.get(t.symbol, 0)) for t in trades]


class Session:
    """One websocket connection: its streams, its outgoing queue and Binance's per-connection rules."""

    def __init__(self, ws: ServerConnection, simulator: BinanceSimulator, combined: bool) -> None:
        self.ws = ws
        self.simulator = simulator
        self.combined = combined
        self.streams: set[str] = set()
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.received: deque[float] = deque()
        self.closing: asyncio.Task[None] | None = None

    def push(self, stream: str, event: dict[str, Any]) -> None:
        if self.queue.qsize() >= self.simulator.config.max_queue:  # a client this slow is dropped
            if self.closing is None:
                self.closing = asyncio.get_running_loop().create_task(self.ws.close(1008, "slow consumer"))
            return
        data = {"stream": stream, "data": event} if self.combined else event
        self.queue.put_nowait(orjson.dumps(data).decode())

    def follow(self, streams: list[str]) -> None:
        for stream in streams:
            if stream not in self.streams:
                self.streams.add(stream)
                self.simulator.market.subscribe(stream, self)
        if streams:
            self.simulator.subscribed.set()

    def drop(self, streams: list[str]) -> None:
        for stream in streams:
            if stream in self.streams:
                self.streams.discard(stream)
                self.simulator.market.unsubscribe(stream, self)

    async def run(self) -> None:
        sender = asyncio.get_running_loop().create_task(self._send())
        try:
            async with asyncio.timeout(self.simulator.config.max_age):
                async for message in self.ws:
                    if not self._within_rate():
                        await self.ws.close(1008, "Too many requests")
                        return
                    reply = self._request(message)
                    if reply is not None:
                        self.queue.put_nowait(orjson.dumps(reply).decode())
        except TimeoutError:
            await self.ws.close(1001, "connection age limit")
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            self.drop(list(self.streams))

    def _within_rate(self) -> bool:
        now = time.monotonic()
        self.received.append(now)
        while self.received and self.received[0] <= now - 1.0:
            self.received.popleft()
        return len(self.received) <= MESSAGES_PER_SECOND

    async def _send(self) -> None:
        try:
            while True:
                await self.ws.send(await self.queue.get())
        except ConnectionClosed:
            pass

    def _request(self, message: str | bytes) -> dict[str, Any] | None:
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            return {"error": {"code": 3, "msg": f"Invalid JSON: {exc}"}, "id": None}
        if type(request) is not dict or "method" not in request:
            return {"error": {"code": 2, "msg": "Invalid request: missing field `method`"}, "id": None}
        request_id, method, params = request.get("id"), request.get("method"), request.get("params", [])
        if not isinstance(params, list) or not all(type(p) is str for p in params):
            return {"error": {"code": 2, "msg": "Invalid request: params must be strings"}, "id": request_id}
        if method == "SUBSCRIBE":
            self.follow(params)
            return {"result": None, "id": request_id}
        if method == "UNSUBSCRIBE":
            self.drop(params)
            return {"result": None, "id": request_id}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": sorted(self.streams), "id": request_id}
        expected = "SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS"
        msg = f"Invalid request: unknown variant {method!r}, expected {expected}"
        return {"error": {"code": 2, "msg": msg}, "id": request_id}


class BinanceSimulator:
    """A local Binance spot market-data server replaying tapes; ``start`` returns the bound port."""

    def __init__(self, config: BinanceSimulatorConfig) -> None:
        self.config = config
        self.market: Market
        self.rest_state = rest.RestState(config.throttle_every, config.retry_after)
        self.sessions: set[Session] = set()
        self.subscribed = asyncio.Event()
        self.finished = asyncio.Event()
        self._server: Server | None = None
        self._replay: asyncio.Task[None] | None = None
        self._trades: list[Trade] = []
        self.port = 0

    @property
    def urls(self) -> dict[str, str]:
        base = f"{self.config.host}:{self.port}"
        return {"ws": f"ws://{base}", "rest": f"http://{base}"}

    async def start(self) -> int:
        instruments: set[str] = set()
        for tape in self.config.tapes:  # reads every row up front, so a broken tape fails here
            instruments.update(trade.symbol for trade in read_tape(tape))
        self._trades = continued(list(merge_tapes(self.config.tapes)), self.config.continue_after)
        offset_ms = 0
        if self.config.rebase_now and self._trades:
            first = ms_from_utc(self._trades[0].ts_event)
            now_ms = int(time.time() * 1000)
            offset_ms = (now_ms - first) // 60_000 * 60_000
            if self.config.continue_after:  # start now, after the stored trades (off the minute grid)
                offset_ms = max(now_ms, *(ms + 1 for _, _, ms in self.config.continue_after)) - first
        self.market = Market(instruments, offset_ms)
        self.market.drop_every, self.market.poison_every = self.config.drop_every, self.config.poison_every
        self._server = await serve(
            self._handler,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            ping_interval=self.config.ping_interval,
            ping_timeout=self.config.pong_timeout,
            logger=logging.getLogger("binance-simulator.websockets"),
        )
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        log.info(
            "listening on %s:%d, %d instruments, %d trades",
            self.config.host,
            self.port,
            len(instruments),
            len(self._trades),
        )
        self._replay = asyncio.get_running_loop().create_task(self._run_replay())
        return self.port

    async def _run_replay(self) -> None:
        if self.config.wait_for_subscriber:
            await self.subscribed.wait()
        loop = asyncio.get_running_loop()
        anchor, first_ms = loop.time(), None
        for index, trade in enumerate(self._trades):
            ms = ms_from_utc(trade.ts_event)
            first_ms = ms if first_ms is None else first_ms
            if self.config.speed > 0:
                due = anchor + (ms - first_ms) / 1000 / self.config.speed
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
            elif index % 200 == 0:
                await asyncio.sleep(0)
            self.market.play(trade)
        self.finished.set()

    async def stop(self) -> None:
        if self._replay is not None:
            self._replay.cancel()
            await asyncio.gather(self._replay, return_exceptions=True)
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
            self._server = None

    async def _handler(self, ws: ServerConnection) -> None:
        url = urlsplit(ws.request.path if ws.request is not None else "")
        combined = url.path.rstrip("/") == "/stream"
        session = Session(ws, self, combined)
        if combined:
            streams = parse_qs(url.query).get("streams", [""])[-1]
            session.follow([s for s in streams.split("/") if s])
        else:
            session.follow([s for s in url.path.removeprefix("/ws").strip("/").split("/") if s])
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        extra: list[tuple[str, str]] = []
        if url.path == "/stream" or url.path == "/ws" or url.path.startswith(("/ws/", "/stream/")):
            return None
        if url.path == "/sim/v1/status":
            status, body = 200, orjson.dumps(self.status())
        else:
            status, extra, body = rest.handle(self.market, self.rest_state, url.path, parse_qs(url.query))
        headers = Headers(
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
                *extra,
            ]
        )
        return Response(status, HTTPStatus(status).phrase, headers, body)

    def status(self) -> dict[str, object]:
        return {
            "played": self.market.played,
            "pushed": self.market.pushed,
            "finished": self.finished.is_set(),
            "clock_ms": self.market.clock_ms,
            "connections": len(self.sessions),
            "instruments": sorted(self.market.instruments.values()),
            "offset_ms": self.market.offset_ms,
            "rest_requests": self.rest_state.requests,
            "throttled": self.rest_state.throttled,
        }
