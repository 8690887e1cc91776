"""One websocket client session on ``/ws/v5/public`` or ``/ws/v5/business``.

Requests: ``{"op":"subscribe"|"unsubscribe","args":[{"channel":..,"instId":..}],"id"?}`` -> one ack per arg
(errors 60012 invalid request, 60013 invalid args, 60018 wrong URL/channel/instId, 60019 invalid op; one
error refuses the whole request). Text ``ping`` -> text ``pong``. Idle rule: closed with 4004 when no
subscription exists ``idle_timeout`` after connecting, or nothing was received from the client nor pushed
to it for ``idle_timeout``. Outgoing frames go through one queue so a slow client never blocks the replay;
more than ``max_queue`` waiting frames closes it with 4005, as OKX does when its buffer is full.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Literal

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from connectors.okx.simulator import messages
from connectors.okx.simulator.candles import CANDLE_SPECS
from connectors.okx.simulator.faults import FaultState, poisoned

if TYPE_CHECKING:
    from connectors.okx.simulator.server import Simulator

log = logging.getLogger("okx-simulator")

Endpoint = Literal["public", "business"]
PUBLIC_PATH = "/ws/v5/public"
BUSINESS_PATH = "/ws/v5/business"
BUSINESS_CHANNELS = frozenset({"trades-all", *CANDLE_SPECS})
# Public channels acknowledged like OKX but without data here (the tapes hold trades only).
PUBLIC_SILENT_CHANNELS = frozenset(
    {
        "tickers",
        "books",
        "books5",
        "bbo-tbt",
        "books-l2-tbt",
        "books50-l2-tbt",
        "mark-price",
        "index-tickers",
        "funding-rate",
        "open-interest",
    }
)


def _is_request_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 32 and value.isascii() and value.isalnum()


class Session:
    """State and tasks of one connection: subscriptions, outgoing queue, idle watchdog, faults."""

    def __init__(self, ws: ServerConnection, endpoint: Endpoint, sim: Simulator) -> None:
        self.ws = ws
        self.endpoint = endpoint
        self.sim = sim
        config = sim.config
        self.legacy = config.legacy_fields
        self.conn_id = messages.new_conn_id()
        self.wire_conn_id = None if self.legacy else self.conn_id
        self.subscriptions: set[tuple[str, str]] = set()
        self.queue: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
        self.faults = FaultState(config.faults)
        loop = asyncio.get_running_loop()
        self.connected_at = loop.time()
        self.last_activity = self.connected_at
        self.ever_subscribed = False
        self.pushes_sent = 0
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self.peer = "{}:{}".format(*ws.remote_address[:2]) if ws.remote_address else "?"

    # ------------------------------------------------------------------ outgoing
    def push(self, frame: str) -> None:
        """Queue a data push (called by the hub; never blocks)."""
        if self._closing:
            return
        if self.queue.qsize() >= self.sim.config.max_queue:
            self._closing = True
            log.warning("conn %s buffer full (%d queued), closing 4005", self.conn_id, self.queue.qsize())
            self._spawn(self._close(messages.BUFFER_FULL_CODE, messages.BUFFER_FULL_REASON))
            return
        self.queue.put_nowait((frame, True))

    def reply(self, frame: str) -> None:
        self.queue.put_nowait((frame, False))

    async def _sender(self) -> None:
        config = self.sim.config.faults
        loop = asyncio.get_running_loop()
        while True:
            frame, is_push = await self.queue.get()
            if not is_push:
                await self.ws.send(frame)
                continue
            plan = self.faults.on_push(frame)
            for event in plan.events:
                log.info("fault: conn %s %s", self.conn_id, event)
            for out in plan.frames:
                await self.ws.send(out)
            self.pushes_sent += 1
            self.last_activity = loop.time()
            if self.pushes_sent == 1 and config.notice_then_close is not None:
                self._spawn(self._notice_then_close(config.notice_then_close))
            if plan.stall_seconds:
                await asyncio.sleep(plan.stall_seconds)
                log.info("fault: conn %s stall over, %d frames queued", self.conn_id, self.queue.qsize())
            if plan.drop:
                self._abort()
                return

    def _abort(self) -> None:
        self._closing = True
        transport = self.ws.transport
        if transport is not None:
            transport.abort()

    async def _close(self, code: int, reason: str) -> None:
        self._closing = True
        await self.ws.close(code, reason)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)

    # ------------------------------------------------------------------ timers
    async def _watchdog(self) -> None:
        timeout = self.sim.config.idle_timeout
        loop = asyncio.get_running_loop()
        while True:
            deadline = self.last_activity + timeout
            if not self.subscriptions and not self.ever_subscribed:
                deadline = min(deadline, self.connected_at + timeout)
            wait = deadline - loop.time()
            if wait <= 0:
                log.info("conn %s idle for %g s, closing 4004", self.conn_id, timeout)
                await self._close(messages.IDLE_CLOSE_CODE, messages.IDLE_CLOSE_REASON)
                return
            await asyncio.sleep(wait)

    async def _drop_every(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        log.info("fault: conn %s drop: connection aborted after %g s", self.conn_id, seconds)
        self._abort()

    async def _notice_then_close(self, seconds: float) -> None:
        log.info("fault: conn %s notice 64008, closing in %g s", self.conn_id, seconds)
        self.reply(messages.notice(self.wire_conn_id))
        await asyncio.sleep(seconds)
        log.info("fault: conn %s closing after the 64008 notice", self.conn_id)
        await self._close(1012, "service upgrade")

    # ------------------------------------------------------------------ requests
    def _error(self, code: str, msg: str, request_id: str | None) -> None:
        self.reply(messages.error(code, msg, self.wire_conn_id, request_id))

    def _channel_error(self, op: str, arg: dict[str, Any]) -> str | None:
        """Why this arg cannot be (un)subscribed on this endpoint, as a 60018 message, or None."""
        channel = arg.get("channel")
        inst_id = arg.get("instId", "")
        market = self.sim.market
        if self.endpoint == "public":
            served = channel == "trades" or channel in PUBLIC_SILENT_CHANNELS
        else:
            served = channel in BUSINESS_CHANNELS
        if not served or (channel not in PUBLIC_SILENT_CHANNELS and inst_id not in market.instruments):
            return messages.wrong_channel_msg(op, str(channel), str(inst_id))
        return None

    def handle(self, text: str) -> None:
        if text == "ping":
            self.reply("pong")
            return
        request = self._request(text)
        if request is None:
            return
        op, args, request_id = request
        clean = self._clean_args(op, args, request_id)
        if clean is None:
            return
        for arg in clean:
            self.reply(messages.ack(op, arg, self.wire_conn_id, request_id))
            if op == "subscribe":
                self._subscribe((arg["channel"], arg["instId"]))
            else:
                self._unsubscribe((arg["channel"], arg["instId"]))
        if op == "subscribe":
            self.sim.subscribed()

    def _request(self, text: str) -> tuple[str, list[Any], str | None] | None:
        """The op, args and id of a well-formed (un)subscribe request; else reply its error, None."""
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            request = None
        if not isinstance(request, dict):
            self._error("60012", f"Invalid request: {text[:200]}", None)
            return None
        request_id = request.get("id")
        if request_id is not None and not _is_request_id(request_id):
            self._error("60012", f"Invalid request: {text[:200]}", None)
            return None
        op = request.get("op")
        if op not in ("subscribe", "unsubscribe"):
            self._error("60019", f"Invalid OP: {op}", request_id)
            return None
        args = request.get("args")
        if not isinstance(args, list) or not args:
            self._error("60012", f"Invalid request: {text[:200]}", request_id)
            return None
        return op, args, request_id

    def _clean_args(self, op: str, args: list[Any], request_id: str | None) -> list[dict[str, str]] | None:
        """Every arg as channel + instId if all are valid and served here; else reply the first error,
        None (a request is taken whole or not at all)."""
        clean: list[dict[str, str]] = []
        for arg in args:
            if (
                not isinstance(arg, dict)
                or not isinstance(arg.get("channel"), str)
                or not all(isinstance(v, str) for v in arg.values())
            ):
                self._error("60013", f"Invalid args: {orjson.dumps(arg).decode()[:200]}", request_id)
                return None
            problem = self._channel_error(op, arg)
            if problem is not None:
                self._error("60018", problem, request_id)
                return None
            clean.append({"channel": arg["channel"], "instId": arg.get("instId", "")})
        return clean

    def _subscribe(self, key: tuple[str, str]) -> None:
        """Join ``key``'s pushes (once) and send its initial frames, poisoned first if so configured."""
        self.ever_subscribed = True
        if key in self.subscriptions:
            return
        self.subscriptions.add(key)
        self.sim.hub.add(key, self)
        poison = self.sim.config.faults.poison_first
        for frame in self.sim.market.initial_frames(*key):
            if poison is not None and key[0] == "trades":
                log.info("fault: conn %s poison: %s frame before the first push", self.conn_id, poison)
                self.reply(poisoned(frame, poison))
            self.push(frame)

    def _unsubscribe(self, key: tuple[str, str]) -> None:
        self.subscriptions.discard(key)
        self.sim.hub.remove(key, self)

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        path = self.ws.request.path if self.ws.request else ""
        log.info("connect conn %s %s %s", self.conn_id, self.peer, path)
        faults = self.sim.config.faults
        sender = asyncio.get_running_loop().create_task(self._sender())
        self._spawn(self._watchdog())
        if faults.drop_every_seconds is not None:
            self._spawn(self._drop_every(faults.drop_every_seconds))
        try:
            async for message in self.ws:
                self.last_activity = asyncio.get_running_loop().time()
                if isinstance(message, str):
                    self.handle(message)
                else:
                    self._error("60012", "Invalid request: binary frame", None)
        except ConnectionClosed:
            pass
        finally:
            self._closing = True
            for key in self.subscriptions:
                self.sim.hub.remove(key, self)
            self.subscriptions.clear()
            for task in self._tasks:
                task.cancel()
            sender.cancel()
            await asyncio.gather(sender, *self._tasks, return_exceptions=True)
            log.info(
                "disconnect conn %s code=%s reason=%r pushes=%d",
                self.conn_id,
                self.ws.close_code,
                self.ws.close_reason,
                self.pushes_sent,
            )
