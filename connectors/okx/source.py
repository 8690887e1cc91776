"""Bytewax source of live OKX trades over the v5 public websocket, gap-filled from REST: the
exchange-neutral :class:`connectors.trades_source.TradesSource` with OKX as its one venue.

Items: :class:`market.types.Trade` (``origin`` ``ws`` or ``rest``), :class:`market.types.Rejected`
(refused frames and trades, ``source`` ``okx-ws`` or ``okx-rest``), :class:`market.types.FeedState`,
:class:`connectors.okx.events.Gap` and :class:`connectors.okx.events.ConnectionHealth`.
See docs/okx-connectivity.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors.okx.exchange import SPEC
from connectors.stream_connection import ConnectLimiter
from connectors.trades_source import Positions, TradesItem, TradesPartition, TradesSource, Venue
from market.sequencing import Position

OkxItem = TradesItem
OkxTradesPartition = TradesPartition


class OkxTradesSource(TradesSource):
    """Live OKX ``trades`` for ``instruments``, one partition per websocket connection (partition key:
    the comma-joined instruments); what it emits and guarantees is :class:`TradesSource`'s.

    ``start_after``: instrument -> trade id, or (trade id, its time in epoch ms), to start after when
    there is no resume state; ``end_trade_ids``: instrument -> last trade id to emit. Every other
    argument is :class:`TradesSource`'s.
    """

    def __init__(
        self,
        ws_url: str,
        rest_url: str,
        instruments: Sequence[str],
        *,
        start_after: Mapping[str, int | Position] | None = None,
        end_trade_ids: Mapping[str, int] | None = None,
        **options: Any,
    ) -> None:
        venue = Venue(SPEC, ws_url, rest_url, tuple(instruments), start_after or {}, end_trade_ids or {})
        super().__init__([venue], **options)
        self.ws_url = ws_url
        self.rest_url = rest_url
        self.instruments = self.venues["okx"].instruments
        self.end_trade_ids = dict(end_trade_ids or {})

    @property
    def limiter(self) -> ConnectLimiter:
        """The limiter of this source's new connections (OKX's process-wide one unless replaced)."""
        return self.limiters["okx"]

    @limiter.setter
    def limiter(self, value: ConnectLimiter) -> None:
        self.limiters["okx"] = value


__all__ = ["OkxItem", "OkxTradesPartition", "OkxTradesSource", "Positions"]
