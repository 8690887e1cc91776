"""Connector-level records emitted by the OKX trades source next to trades and rejects.

They describe the feed, not the market: a :class:`Gap` says which trade ids were missing and whether
REST filled them; a :class:`ConnectionHealth` is a periodic snapshot of one websocket connection.
Times are timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

GapReason = Literal["reconnect", "sequence", "resume"]
ConnectionState = Literal["connecting", "subscribed", "backoff", "stopped"]


@dataclass(frozen=True, slots=True)
class Gap:
    """Trade ids missing from the live stream of one instrument, strictly between two known trades.

    ``from_trade_id`` is the last trade seen before the gap, ``to_trade_id`` the first trade id of the
    push that revealed it (for an aggregated push, ``tradeId - count + 1``); the missing ids are
    ``from_trade_id < id < to_trade_id``. ``filled`` is true when REST returned every one of them
    (checked with the ``tradeId - count == previous tradeId`` rule), in which case they were emitted, in
    order, before the live trade. An unfilled gap still emits what REST returned
    (``trades_backfilled``). ``reason``: ``reconnect`` (first push after a new connection),
    ``resume`` (first push after starting from a saved position) or ``sequence`` (within a connection:
    a lost or reordered push). ``recovery_seconds``: for ``reconnect`` gaps, the time from losing the
    previous connection to the backfilled trades being handed to the dataflow.
    """

    exchange: str
    symbol: str
    from_trade_id: int
    to_trade_id: int
    from_time: datetime | None
    to_time: datetime | None
    filled: bool
    trades_backfilled: int
    reason: GapReason
    detected_at: datetime
    recovery_seconds: float | None = None
    error: str | None = None

    @property
    def missing(self) -> int:
        """How many trade ids the gap spans (fills, not pushes)."""
        return self.to_trade_id - self.from_trade_id - 1

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.exchange, self.symbol, self.from_trade_id, self.to_trade_id)


@dataclass(frozen=True, slots=True)
class ConnectionHealth:
    """A snapshot of one websocket connection (one source partition) at ``time``.

    Counters are cumulative since the partition was built. ``connected_since`` is None while not
    subscribed; ``last_message_at`` is the last frame of any kind received.
    """

    exchange: str
    connection: str
    instruments: tuple[str, ...]
    time: datetime
    state: ConnectionState
    connected_since: datetime | None
    last_message_at: datetime | None
    messages_received: int
    trades_emitted: int
    trades_backfilled: int
    duplicates_dropped: int
    reconnects: int
    gaps_filled: int
    gaps_unfilled: int
    rejects: int
    subscribe_errors: int
    pings_sent: int
    pongs_received: int
    last_error: str | None
