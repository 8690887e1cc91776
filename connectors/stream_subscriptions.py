"""The subscriptions of one websocket connection: the requests sent (from the exchange's spec, paced
under its message rate) and what the exchange answered to them.

An exchange acknowledges an instrument (OKX, per arg) or a whole request (Binance); it may refuse a
whole request for one bad instrument (OKX does), so a refused request of several is asked again one
instrument at a time, and an instrument refused alone is not asked for again on any connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from connectors.exchange import Acked, ExchangeSpec
from connectors.exchange import Refused as RequestRefused
from market.sequencing import Event, Heard, Refused, Subscribed


class TextSocket(Protocol):
    async def send(self, message: str) -> None: ...


class Subscriptions:
    """What one connection asked for and what is still waiting for its acknowledgement."""

    def __init__(self, spec: ExchangeSpec, instruments: Sequence[str]) -> None:
        self.spec = spec
        self.instruments = tuple(instruments)
        self.refused: set[str] = set()
        self.pending: set[str] = set()
        self._requests = 0
        self._batch: dict[str, tuple[str, ...]] = {}
        self._wanted: list[str] = []
        self._singles: dict[str, str] = {}

    def wanted(self) -> list[str]:
        """The instruments to ask for on a new connection (all but those refused)."""
        return [inst for inst in self.instruments if inst not in self.refused]

    @property
    def all_refused(self) -> bool:
        return self.refused.issuperset(self.instruments)

    async def subscribe(self, ws: TextSocket, wanted: list[str]) -> None:
        """Ask for ``wanted`` on a new connection; each waits for its acknowledgement."""
        self.pending = set(wanted)
        self._wanted = wanted
        self._batch = await self.send(ws, wanted)
        self._singles = {}

    async def send(self, ws: TextSocket, instruments: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """Send the spec's requests for ``instruments``, paced under the exchange's message rate;
        returns each request id with the instruments it asks for."""
        requests = self.spec.subscriptions(instruments, self._requests + 1)
        self._requests += len(requests)
        rate = self.spec.limits.messages_per_second
        for i, request in enumerate(requests):
            if rate is not None and i:
                await asyncio.sleep(1.0 / rate)
            await ws.send(request.message)
        return {request.request_id: request.symbols for request in requests}

    def acked(self, ack: Acked, now: datetime) -> list[Event]:
        """The instruments a subscription ack confirms (one, or every one of its request)."""
        if ack.symbol is not None:
            symbols: tuple[str, ...] = (ack.symbol,)
        else:
            single = self._singles.get(ack.request_id or "")
            symbols = self._batch.get(ack.request_id or "", (single,) if single is not None else ())
        confirmed = [inst for inst in symbols if inst in self.pending]
        self.pending.difference_update(confirmed)
        return [Subscribed(inst, now) for inst in confirmed]

    async def refusal(self, ws: TextSocket, error: RequestRefused, now: datetime) -> tuple[Event, bool]:
        """A refused request: one of several is asked again per instrument (True: requests were sent);
        an instrument refused alone is refused for good."""
        batch = self._batch
        if error.request_id in batch and len(self._wanted) > 1:
            for inst in list(self.pending):
                for request_id in await self.send(ws, [inst]):
                    self._singles[request_id] = inst
            return Heard(now), True
        if error.request_id in self._singles or error.request_id in batch:
            key = error.request_id or ""
            refused = self._singles.get(key) or batch.get(key, tuple(self._wanted))[0]
            self.refused.add(refused)
            self.pending.discard(refused)
            return Refused(refused, now, f"{error.code} {error.msg}"), False
        return Heard(now), False
