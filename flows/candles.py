"""The per-instrument candle step: a thin Bytewax adapter around ``market.windowing.SeriesWindows``.

Items in, of one instrument (a keyed stream): trades; ``FeedState`` (live sources: whether the feed is
complete up to now; while it is not, the wall clock does not close windows); ``Gap`` (a hole REST
could not fill marks the candles of its minutes incomplete). Items out: the new (non-duplicate) trades of each
batch as one ``TradeBatch`` (late ones included, so they are stored, TIME.md rule 4), every final
``Candle`` (1m and the higher timeframes, in close order), a ``LateTrade`` for each late trade, each
``Gap`` passed on, and (live) a throttled ``ProvisionalCandle``.

Clock policies:
- ``event`` (replay): the watermark moves only with event time; at the end of the input the windows
  closing at or before the instrument's declared end are emitted (rule 9). Deterministic.
- ``wall`` (live): the watermark also advances with elapsed time while the instrument is quiet and its
  feed is live (``market.watermark.Watermark``), so candles close about ``grace`` after their end even
  without trades. With a source that reports ``FeedState`` the elapsed time is the feed's own receive
  clock (trades count from their ``ts_recv``, the present is the last frame heard), so a stalled
  socket closes nothing and a recorded session closes the same candles; otherwise it is local time,
  and the step asks Bytewax to wake it when the next candle is due.

A series whose stored data ends somewhere (``CandleConfig.resume``) continues from there: the next
candle emitted is the one after the last stored, exactly as an uninterrupted run would emit it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from bytewax.operators import StatefulBatchLogic

from connectors.live_items import ProvisionalCandle
from connectors.okx.events import Gap
from market.types import Candle, FeedState, Trade, TradeBatch
from market.watermark import Watermark
from market.windowing import LateTrade, ResumePoint, SeriesWindows

CandleIn = Trade | FeedState | Gap
CandleOut = TradeBatch | Candle | LateTrade | ProvisionalCandle | Gap
ClockPolicy = Literal["event", "wall"]
_RECHECK = timedelta(seconds=1)


@dataclass(frozen=True)
class CandleConfig:
    """What the candle step needs to know, resolved from settings by the flow factory."""

    exchange: str = "okx"
    grace: timedelta = timedelta(seconds=2)
    emit_flat: bool = True
    clock: ClockPolicy = "event"
    ends: dict[str, datetime] = field(default_factory=dict)
    """Per instrument end of a finite replay (rule 9); ignored by the live clock."""
    contract_values: dict[str, Decimal] = field(default_factory=dict)
    provisional_every: timedelta | None = None
    """Live only: emit the in-progress 1m candle at most this often (marked provisional, rule 7)."""
    resume: dict[str, ResumePoint] = field(default_factory=dict)
    """Per instrument, where its stored data ends (a new series starts there; the stored open trades
    are fed again but not re-emitted)."""


@dataclass
class CandleState:
    """What Bytewax snapshots for one instrument."""

    windows: SeriesWindows
    clock: Watermark
    fresh: bool = False
    """The first trade's window is to be marked incomplete (it began before the feed did)."""


class CandleLogic(StatefulBatchLogic[CandleIn, CandleOut, CandleState]):
    """Candle windows of one instrument. Bytewax gives a builder only the resume state, not the key,
    so a new instrument's state is created from its first item."""

    def __init__(self, config: CandleConfig, state: CandleState | None) -> None:
        self.config = config
        self.state = state
        self._provisional_at: datetime | None = None
        if state is not None and config.clock == "wall":
            # Restored from a recovery snapshot: the time since it was taken must not close windows
            # before the source has caught up (it says so with a live FeedState).
            state.clock.live = False

    def _new_state(self, symbol: str, out: list[CandleOut]) -> CandleState:
        config = self.config
        windows = SeriesWindows(
            config.exchange,
            symbol,
            grace=config.grace,
            emit_flat=config.emit_flat,
            contract_value=config.contract_values.get(symbol, Decimal(1)),
        )
        clock = Watermark(grace=config.grace)
        point = config.resume.get(symbol)
        # Live, with no candle stored before: the first window began before the feed did (incomplete).
        fresh = config.clock == "wall" and (point is None or point.last_candle is None)
        if point is not None:
            if fresh and point.open_trades:
                windows.mark_incomplete(point.open_trades[0].ts_event, point.open_trades[0].ts_event)
                fresh = False
            out.extend(windows.resume(point).candles)
            if point.open_trades:  # the newest stored trade counts from when it was received
                newest = max(point.open_trades, key=lambda t: t.ts_event)
                clock.observe(newest.ts_event, newest.ts_recv or datetime.now(UTC))
        return CandleState(windows, clock, fresh=fresh)

    def on_batch(self, values: list[CandleIn]) -> tuple[Iterable[CandleOut], bool]:
        out: list[CandleOut] = []
        if self.state is None:
            self.state = self._new_state(values[0].symbol, out)
        windows = self.state.windows
        clock = self.state.clock
        wall = self.config.clock == "wall"
        now = datetime.now(UTC)
        accepted: list[Trade] = []
        if self.state.fresh and (first := next((t for t in values if type(t) is Trade), None)):
            windows.mark_incomplete(first.ts_event, first.ts_event)
            self.state.fresh = False
        for trade in values:
            if type(trade) is not Trade:
                if isinstance(trade, FeedState):
                    # Every trade received up to heard_at came before: the feed's clock moves here, in
                    # order, so the outputs are a function of the items alone (a recording replays them).
                    clock.on_feed(trade)
                    if wall and (watermark := clock.at(now)) is not None:
                        out.extend(windows.advance(watermark).candles)
                elif isinstance(trade, Gap):
                    if not trade.filled:
                        windows.mark_incomplete(trade.from_time, trade.to_time)
                    out.append(trade)  # passed on to the database
                continue
            if wall:  # with a feed's clock a trade counts from its receive time, else from local time
                seen = trade.ts_recv if clock.live is not None and trade.ts_recv is not None else now
                clock.observe(trade.ts_event, seen)
            emitted = windows.on_trade(trade)
            if emitted.duplicates:
                continue
            accepted.append(trade)
            if emitted.late:
                out.extend(emitted.late)
            if emitted.candles:
                out.extend(emitted.candles)
        if accepted:
            out.insert(0, TradeBatch(tuple(accepted)))
        if wall:
            if clock.live is None and (watermark := clock.at(now)) is not None:  # local time counts
                out.extend(windows.advance(watermark).candles)
            every = self.config.provisional_every
            if every is not None and (self._provisional_at is None or now - self._provisional_at >= every):
                if (provisional := self._provisional(now)) is not None:
                    out.append(provisional)
                    self._provisional_at = now
        return out, StatefulBatchLogic.RETAIN

    def _provisional(self, now: datetime) -> ProvisionalCandle | None:
        assert self.state is not None
        c = self.state.windows.in_progress()
        if c is None:
            return None
        return ProvisionalCandle(
            c.exchange,
            c.symbol,
            c.timeframe,
            c.open_time,
            c.close_time,
            c.open,
            c.high,
            c.low,
            c.close,
            c.volume,
            c.quote_volume,
            c.trade_count,
            c.vwap,
            now,
        )

    def on_notify(self) -> tuple[Iterable[CandleOut], bool]:
        if self.state is None or (watermark := self.state.clock.at(datetime.now(UTC))) is None:
            return (), StatefulBatchLogic.RETAIN
        return self.state.windows.advance(watermark).candles, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[CandleOut], bool]:
        if self.config.clock != "event" or self.state is None:
            return (), StatefulBatchLogic.RETAIN
        windows = self.state.windows
        end = self.config.ends.get(windows.symbol) or windows.newest_event
        if end is None:
            return (), StatefulBatchLogic.RETAIN
        return windows.finish(end).candles, StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        """Live: the wall time at which the watermark reaches the next close (so a candle is emitted
        within scheduling jitter of close + grace), re-checked at least every second."""
        if self.config.clock != "wall" or self.state is None:
            return None
        clock = self.state.clock
        due = self.state.windows.next_close
        now = datetime.now(UTC)
        if clock.newest_event is None or clock.seen_at is None or due is None or clock.live is False:
            return now + _RECHECK
        # watermark(t) = newest - grace + (t - seen_at)  =>  reaches `due` at this wall time:
        at = clock.seen_at + (due - clock.newest_event + clock.grace)
        return min(max(at, now), now + _RECHECK)

    def snapshot(self) -> CandleState | None:  # type: ignore[override]
        return copy.deepcopy(self.state)
