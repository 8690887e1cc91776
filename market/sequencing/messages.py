"""What goes into and comes out of the sequencer: inputs stamped with their receive time, requests for
the caller to perform, the :class:`Gap` record, and the :class:`Limits` a live feed must keep."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from market.types import FeedState, Rejected, Trade

GapReason = Literal["reconnect", "sequence", "resume"]
Position = tuple[int, int | None]
"""Where an instrument stands: (last trade id accounted for, that trade's ``ts_event`` in epoch ms or
None when unknown)."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Trade ids missing from the live stream of one instrument, strictly between two known trades.

    The missing ids are ``from_trade_id < id < to_trade_id``: ``from_trade_id`` is the last trade
    accounted for before the hole, ``to_trade_id`` the first fill of the push that revealed it or, for
    the check after a (re)subscription, one past the newest trade REST reported. A gap is emitted before
    the backfilled trades it describes. ``filled``: REST returned every missing trade (count rule
    ``tradeId - count == previous tradeId``); otherwise what it returned (``trades_backfilled``) still
    follows. ``reason``: ``reconnect`` (after a new connection), ``resume`` (after starting from a saved
    position) or ``sequence`` (within a connection). ``recovery_seconds``: for ``reconnect`` gaps, the
    time from losing the connection to the backfill's answer.
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
class Limits:
    """What a live feed may send, and the sequencer's timings."""

    future_tolerance: timedelta = timedelta(seconds=5)
    """A trade stamped later than this after its receive time is refused."""
    max_behind: timedelta = timedelta(minutes=10)
    """A pushed trade stamped longer than this before its receive time is refused."""
    max_trades_per_push: int = 1000
    reorder_window: timedelta = timedelta(milliseconds=500)
    """How long a push after a hole waits for the missing pushes before REST is asked."""
    reorder_max: int = 1000
    """Held pushes of one instrument that end the wait at once."""
    id_slack: int = 1_000_000
    id_rate: float = 10_000.0
    """A trade id may lead the position by at most ``max(id_slack, id_rate * seconds)``, the seconds
    running from the position's trade time to the new trade's receive time."""
    feed_interval: timedelta = timedelta(milliseconds=25)
    """The shortest interval between two live ``FeedState`` items of one instrument. A quiet instrument's
    candle closes at the first of them whose ``heard_at`` reaches its close plus grace, so this bounds
    how late after that it closes (while frames keep coming); the price is up to ``1 s / interval``
    items per second and instrument while the connection is busy."""
    close_grace: timedelta | None = None
    """The candle grace of the flow the feed serves (None: not known). When set, a live instrument's feed
    state is also sent at once, without waiting out ``feed_interval``, when it moves the instrument's
    watermark (``market.watermark.live_watermark``) past a minute's close: when a candle can close."""
    retry_interval: timedelta = timedelta(seconds=1)
    """Wait before asking REST again for the newest trade of an instrument without a start."""
    raw_limit: int = 4096
    """Bytes of a refused frame kept in its ``Rejected.raw``."""


@dataclass(frozen=True, slots=True)
class Start:
    """The partition starts: nothing is live yet."""

    now: datetime


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The exchange acknowledged the subscription of ``symbol`` (a frame received at ``now``)."""

    symbol: str
    now: datetime


@dataclass(frozen=True, slots=True)
class Refused:
    """The exchange refused the subscription of ``symbol``."""

    symbol: str
    now: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Push:
    """A trades frame as parsed; each trade's ``ts_recv`` is ``received``."""

    trades: tuple[Trade, ...]
    raw: bytes
    received: datetime


@dataclass(frozen=True, slots=True)
class Heard:
    """A frame without trades (pong, event): the connection was alive at ``received``."""

    received: datetime


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A frame refused before its trades could be read (malformed, oversize): it may have carried some."""

    raw: bytes
    reason: str
    received: datetime


@dataclass(frozen=True, slots=True)
class FetchLatest:
    """Request: the newest trades of ``symbol``, answered with :class:`Latest`."""

    symbol: str


@dataclass(frozen=True, slots=True)
class FetchBackfill:
    """Request: the trades of ``symbol`` with ``after_id < id < until_id``, answered with
    :class:`Backfilled`."""

    symbol: str
    after_id: int
    until_id: int


@dataclass(frozen=True, slots=True)
class Latest:
    """The answer to :class:`FetchLatest`: trades in any order, or ``error``."""

    symbol: str
    trades: tuple[Trade, ...]
    error: str | None
    received: datetime


@dataclass(frozen=True, slots=True)
class Backfilled:
    """The answer to ``request``: ``trades`` within the ids asked for, ``outside`` any others returned."""

    request: FetchBackfill
    trades: tuple[Trade, ...]
    outside: tuple[Trade, ...]
    error: str | None
    received: datetime


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: ``now`` is at or after :meth:`Sequencer.next_wakeup`."""

    now: datetime


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection was lost or given up at ``now``."""

    now: datetime
    reason: str


Event = Start | Subscribed | Refused | Push | Heard | Unreadable | Latest | Backfilled | Tick | Disconnected
Request = FetchLatest | FetchBackfill
Action = Trade | Rejected | Gap | FeedState | FetchLatest | FetchBackfill
