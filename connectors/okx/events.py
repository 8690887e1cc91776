"""Connector-level records emitted by the OKX trades source next to trades, rejects and feed states.

They describe the feed, not the market: a :class:`Gap` (defined with the sequencer that decides it,
``market.sequencing``) says which trade ids were missing and whether REST filled them; a
:class:`ConnectionHealth` is a periodic snapshot of one websocket connection. Times are timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from market.sequencing import Gap, GapReason

ConnectionState = Literal["connecting", "subscribed", "backoff", "stopped"]


@dataclass(frozen=True, slots=True)
class ConnectionHealth:
    """A snapshot of one websocket connection (one source partition) at ``time``.

    Counters are cumulative since the partition was built. ``connected_since`` is None while not
    subscribed; ``last_message_at`` is the last frame of any kind received. ``stalled_seconds``: the
    longest span over which trade pushes of one instrument (``stalled_symbol``) kept arriving while none
    of its trades was accepted (all rejected, duplicates or held), up to now. ``queued``: items waiting
    for the dataflow (the network side stops reading at the source's ``queue_max_items``).
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
    stalled_seconds: float = 0.0
    stalled_symbol: str | None = None
    queued: int = 0
    data_types: tuple[str, ...] = ("trades",)
    """What the connection collects for its instruments (every connection here subscribes to trades)."""


__all__ = ["ConnectionHealth", "ConnectionState", "Gap", "GapReason"]
