"""What a series' event-time windows (``market.windowing.SeriesWindows``) take and give besides trades
and candles: late trades, the outcome of one call, and where stored data end (a resume point)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from market.types import Candle, Trade


@dataclass(frozen=True, slots=True)
class LateTrade:
    """A trade whose 1m candle was already closed when it arrived (rule 4); it changed no candle.

    ``candle_close`` is the close of the 1m candle it missed, ``watermark`` the watermark at its arrival.
    """

    trade: Trade
    candle_close: datetime
    watermark: datetime

    @property
    def lateness(self) -> timedelta:
        """How late it was: the watermark at arrival minus its ``ts_event`` (always > 0)."""
        return self.watermark - self.trade.ts_event


@dataclass(frozen=True, slots=True)
class Emitted:
    """What one call produced: final candles (close-time order; at one instant 1m first, then longer
    timeframes by length), late trades, and the number of duplicate trades dropped (rule 10)."""

    candles: tuple[Candle, ...] = ()
    late: tuple[LateTrade, ...] = ()
    duplicates: int = 0

    def __bool__(self) -> bool:
        return bool(self.candles or self.late or self.duplicates)


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a series' stored data ends, to continue it exactly (docs/reliability.md, "Resume").

    ``last_candle``: the newest final 1m candle stored (None: trades were stored, no candle yet).
    ``period_candles``: the stored 1m candles of the longer timeframes' still-open intervals (those
    after the open of the current 1d interval, up to and including ``last_candle``), in time order.
    ``open_trades``: the stored trades after ``last_candle`` that were not late, in their arrival
    (trade id) order: the open windows.
    """

    last_candle: Candle | None
    period_candles: tuple[Candle, ...] = ()
    open_trades: tuple[Trade, ...] = ()


NOTHING = Emitted()
