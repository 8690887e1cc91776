"""One instrument's sequencing state, and the feed state it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from market.sequencing.messages import FetchBackfill, FetchLatest, GapReason, Limits, Position
from market.types import EPOCH, FeedState, Trade

MINUTE = timedelta(minutes=1)


@dataclass(slots=True)
class Fill:
    """Context of an outstanding backfill: the hole's time bounds (epoch ms) and its reason."""

    from_ms: int | None
    to_ms: int
    reason: GapReason


@dataclass(slots=True)
class Lane:
    """One instrument's state within a connection."""

    symbol: str
    position: Position | None
    end_id: int | None
    urgent: GapReason | None  # the next hole is filled at once, with this reason (after a (re)subscribe)
    held: dict[int, tuple[Trade, bytes]] = field(default_factory=dict)
    hole_since: datetime | None = None
    subscribed: bool = False
    refused: bool = False
    checked: bool = False  # REST's newest trade was asked for since the last subscription
    recheck: bool = False  # held pushes were discarded while a request was out: ask again after it
    request: FetchLatest | FetchBackfill | None = None
    fill: Fill | None = None
    target: Trade | None = None  # REST's newest trade, not yet reached
    retry_at: datetime | None = None
    suspect_at: datetime | None = None  # an unreadable frame arrived then
    heard_cap: datetime | None = None  # the connection's last frame before it
    lost_at: datetime | None = None
    past_end: bool = False
    down_reason: str = "connecting"
    sent: tuple[bool, str] | None = None
    sent_at: datetime | None = None
    complete_until: datetime | None = None
    last_push_at: datetime | None = None
    unaccepted_since: datetime | None = None
    newest_event: datetime | None = None  # the newest trade time handed over
    lag: timedelta | None = None  # its receive time minus its trade time

    def lowest(self) -> tuple[Trade, bytes] | None:
        return self.held[min(self.held)] if self.held else None

    def stalled(self) -> float:
        """Seconds over which pushes arrived and none was accepted (0 when one was)."""
        if self.unaccepted_since is None or self.last_push_at is None:
            return 0.0
        return (self.last_push_at - self.unaccepted_since).total_seconds()

    def due(self, limits: Limits, connection_heard: datetime | None) -> list[datetime]:
        """When a tick has work for this instrument: its reorder window ends, a retry or a feed state
        is due, or an unreadable frame's suspicion lapses."""
        times = []
        if self.hole_since is not None and self.request is None:
            times.append(self.hole_since + limits.reorder_window)
        if self.retry_at is not None:
            times.append(self.retry_at)
        if self.suspect_at is not None:
            times.append(self.suspect_at + limits.reorder_window)
        if (
            self.sent == (True, "")
            and self.sent_at is not None
            and self.heard(connection_heard) != self.complete_until
        ):
            times.append(self.sent_at + limits.feed_interval)
        return times

    def heard(self, connection_heard: datetime | None) -> datetime | None:
        """The receive time of the newest frame whose trades of this instrument were all handled."""
        return self.heard_cap if self.suspect_at is not None else connection_heard

    def condition(self, connection_heard: datetime | None) -> tuple[bool, str]:
        """Whether the feed is live and, when not, why."""
        if not self.subscribed:
            return False, self.down_reason or "not subscribed"
        if isinstance(self.request, FetchLatest):
            return False, "checking the newest trade over REST"
        if isinstance(self.request, FetchBackfill):
            return False, "backfilling missing trades from REST"
        if self.position is None:
            return False, "waiting for a verified first trade"
        if self.hole_since is not None:
            return False, "hole in the trade ids: waiting for reordered pushes"
        if self.heard(connection_heard) is None:
            return False, "verifying after an unreadable frame"
        return True, ""

    def observe(self, trade: Trade) -> None:
        """Note a trade handed over: the watermark's clock (``market.watermark.Watermark.observe``)."""
        if trade.ts_recv is not None and (self.newest_event is None or trade.ts_event > self.newest_event):
            self.newest_event, self.lag = trade.ts_event, trade.ts_recv - trade.ts_event

    def closes_at(self, heard: datetime, grace: timedelta | None) -> bool:
        """Whether a feed state at ``heard`` would move the watermark (``heard - grace - lag``) past a
        minute's close that the last one sent did not."""
        if grace is None or self.lag is None or self.complete_until is None:
            return False
        shift = grace + self.lag
        return (heard - shift - EPOCH) // MINUTE > (self.complete_until - shift - EPOCH) // MINUTE

    def report(
        self, exchange: str, connection_heard: datetime | None, now: datetime, limits: Limits
    ) -> FeedState | None:
        """A FeedState when the condition changes, and while live when more was heard: at most every
        ``limits.feed_interval``, or at once when a candle can close (``closes_at``); else None. A feed
        that is not live is complete up to when it last was."""
        live, reason = self.condition(connection_heard)
        heard = self.heard(connection_heard)
        if (live, reason) != self.sent:
            at = heard if live and heard is not None else (self.complete_until or now)
            self.sent, self.sent_at = (live, reason), now
            if live:
                self.complete_until, self.lost_at = at, None
            return FeedState(exchange, self.symbol, live, at, reason)
        if (
            live
            and heard is not None
            and heard != self.complete_until
            and self.sent_at is not None
            and (now - self.sent_at >= limits.feed_interval or self.closes_at(heard, limits.close_grace))
        ):
            self.sent_at, self.complete_until = now, heard
            return FeedState(exchange, self.symbol, True, heard)
        return None
