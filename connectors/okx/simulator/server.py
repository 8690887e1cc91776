"""The simulator: websockets server (``/ws/v5/public``, ``/ws/v5/business``) and REST on one port.

Usable in-process::

    sim = Simulator(SimulatorConfig(tapes=(Path("tape.csv"),), speed=0))
    port = await sim.start()
    ...
    await sim.stop()

REST is answered in ``process_request`` (a plain HTTP GET never becomes a websocket); ``/sim/v1/status``
(not an OKX path) reports the replay's progress for tests and scripts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from connectors.okx.simulator import rest
from connectors.okx.simulator.config import SimulatorConfig
from connectors.okx.simulator.continuation import id_shifts, rebase, shifted
from connectors.okx.simulator.replay import Hub, Market, Replay
from connectors.okx.simulator.ws import BUSINESS_PATH, PUBLIC_PATH, Endpoint, Session
from connectors.tape import merge_tapes, read_tape
from market.types import ms_from_utc

log = logging.getLogger("okx-simulator")
STATUS_PATH = "/sim/v1/status"


class Simulator:
    """A local OKX v5 market-data server replaying tapes; ``start`` returns the bound port."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.hub = Hub()
        self.market: Market
        self.replay: Replay
        self.sessions: set[Session] = set()
        self._server: Server | None = None
        self._replay_task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.port = 0
        self.id_shifts: dict[str, int] = {}

    @property
    def urls(self) -> dict[str, str]:
        base = f"{self.config.host}:{self.port}"
        return {
            "ws_public": f"ws://{base}{PUBLIC_PATH}",
            "ws_business": f"ws://{base}{BUSINESS_PATH}",
            "rest": f"http://{base}",
        }

    async def start(self) -> int:
        """Load the tapes, play the history before the start time, listen; return the port."""
        config = self.config
        instruments: set[str] = set()
        first_ids: dict[str, int] = {}
        first_ms: int | None = None
        for tape in config.tapes:  # reads every row up front, so a broken tape fails here
            for trade in read_tape(tape):
                instruments.add(trade.symbol)
                first_ids[trade.symbol] = min(trade.trade_id, first_ids.get(trade.symbol, trade.trade_id))
                ts_ms = ms_from_utc(trade.ts_event)
                if first_ms is None or ts_ms < first_ms:
                    first_ms = ts_ms
        start_tape_ms = None if first_ms is None else first_ms + int(config.start_offset * 1000)
        offset_ms, start_ms, anchor = 0, start_tape_ms, None
        if config.rebase_now and first_ms is not None and start_tape_ms is not None:
            after = [ms for inst, (_, ms) in config.continue_after.items() if inst in instruments]
            # The replay's clock reads the rebased start at this instant, however long the set-up takes.
            anchor, now_ms = asyncio.get_running_loop().time(), time.time() * 1000
            plan = rebase(
                first_ms,
                start_tape_ms,
                int(now_ms),
                max(1, int(config.rebase_align * 1000)),
                max(after, default=None),
            )
            offset_ms, start_ms = plan.offset_ms, plan.start_ms
        self.id_shifts = id_shifts(first_ids, config.continue_after)
        self.market = Market(
            instruments,
            self.hub,
            offset_ms=offset_ms,
            legacy=config.legacy_fields,
            aggregate_fills=config.aggregate,
            ct_val=config.ct_val,
        )
        trades = shifted(merge_tapes(config.tapes), self.id_shifts)
        self.replay = Replay(self.market, trades, speed=config.speed, start_ms=start_ms, anchor=anchor)
        history = self.replay.play_history()
        self._server = await serve(
            self._handler,
            config.host,
            config.port,
            process_request=self._process_request,
            ping_interval=None,
            max_size=64 * 1024,
            logger=logging.getLogger("okx-simulator.websockets"),
        )
        sockname = next(iter(self._server.sockets)).getsockname()
        self.port = int(sockname[1])
        log.info(
            "listening on %s:%d, %d instruments, %d trades of history, offset %d ms, id shifts %s",
            config.host,
            self.port,
            len(instruments),
            history,
            offset_ms,
            self.id_shifts or "none",
        )
        self._replay_task = asyncio.get_running_loop().create_task(self._run_replay())
        return self.port

    def subscribed(self) -> None:
        """Called by sessions on a successful subscription (starts a ``wait_for_subscriber`` replay)."""
        self._subscribed.set()

    async def _run_replay(self) -> None:
        if self.config.wait_for_subscriber:
            await self._subscribed.wait()
        await self.replay.run()

    async def wait_finished(self) -> None:
        await self.replay.finished.wait()

    async def stop(self) -> None:
        """Stop the replay and close every connection with 1001 (going away)."""
        if self._replay_task is not None:
            self._replay_task.cancel()
            try:
                await self._replay_task
            except asyncio.CancelledError:
                pass
            self._replay_task = None
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
            self._server = None
        log.info("stopped")

    async def _handler(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        endpoint: Endpoint = "public" if urlsplit(path).path == PUBLIC_PATH else "business"
        session = Session(ws, endpoint, self)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path in (PUBLIC_PATH, BUSINESS_PATH):
            return None
        if url.path == STATUS_PATH:
            status, body = 200, orjson.dumps(self.status())
        elif url.path.startswith("/api/"):
            status, body = rest.handle(
                self.market, url.path, parse_qs(url.query), self.config.faults.rest_poison
            )
        else:
            status, body = 404, b'{"code":"404","msg":"Not Found","data":[]}'
        headers = Headers(
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
            ]
        )
        return Response(status, HTTPStatus(status).phrase, headers, body)

    def status(self) -> dict[str, object]:
        return {
            "played": self.market.played,
            "pushed": self.market.pushed,
            "finished": self.replay.finished.is_set(),
            "clock_ms": self.market.clock_ms,
            "connections": len(self.sessions),
            "instruments": sorted(self.market.instruments),
            "offset_ms": self.market.offset_ms,
            "id_shifts": self.id_shifts,
        }
