"""The live event-time clock of one series: the watermark the candle step gives ``SeriesWindows``.

Pure: the caller passes local times in (TIME.md rule 3; docs/candles.md and docs/reliability.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from market.types import FeedState

DEFAULT_GRACE = timedelta(seconds=2)
_ZERO = timedelta(0)


def live_watermark(newest_event: datetime, seen_at: datetime, now: datetime, grace: timedelta) -> datetime:
    """The live watermark: ``newest_event - grace + max(0, now - seen_at)``.

    ``seen_at`` is the local time when ``newest_event`` was first seen. Only the elapsed local time is
    used, never a comparison of exchange and local clocks, so a constant skew between them cancels;
    ``grace`` then only has to cover the variation of delivery delay (and local stalls), not the skew.
    """
    elapsed = now - seen_at
    return newest_event - grace + (elapsed if elapsed > _ZERO else _ZERO)


@dataclass(slots=True)
class Watermark:
    """Live event-time clock of one series (rule 3): newest ``ts_event`` minus grace, advanced by
    elapsed local time while no newer trade arrives and the feed is live."""

    grace: timedelta = DEFAULT_GRACE
    newest_event: datetime | None = None
    seen_at: datetime | None = None
    live: bool | None = None
    """The feed's state (``FeedState``): None while the source reports none (then local time counts)."""
    heard_at: datetime | None = None

    def observe(self, ts_event: datetime, now: datetime) -> None:
        """Record a trade seen at local time ``now``; only a newer ``ts_event`` moves the clock."""
        if self.newest_event is None or ts_event > self.newest_event:
            self.newest_event = ts_event
            self.seen_at = now

    def on_feed(self, state: FeedState) -> None:
        """Take the feed's newest state: while it is not live, elapsed time no longer counts."""
        self.live = state.live
        self.heard_at = state.heard_at

    def at(self, now: datetime) -> datetime | None:
        """The watermark at local time ``now``; ``None`` before the first trade or while the feed is
        not live (its windows wait for the missing data). While the feed is live its clock is the
        feed's: ``heard_at``, the receive time of the last frame it has handed over, replaces ``now``
        (a silent socket closes no candle, and a recorded session replays the same closes)."""
        if self.newest_event is None or self.seen_at is None or self.live is False:
            return None
        if self.live and self.heard_at is not None:
            now = self.heard_at
        return live_watermark(self.newest_event, self.seen_at, now, self.grace)
