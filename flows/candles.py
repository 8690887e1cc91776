"""The per-instrument candle step: a thin Bytewax adapter around ``market.windowing.SeriesWindows``.

Items in, of one instrument of one exchange (a stream keyed ``flows.graph.series_key``): trades;
``FeedState`` (live sources: whether the feed is complete up to now; while it is not, the wall clock
does not close windows); ``Gap`` (a hole REST could not fill marks the candles of its minutes
incomplete). Items out: the new (non-duplicate) trades of each batch as one ``TradeBatch`` (late ones
included, so they are stored, TIME.md rule 4), every final ``Candle`` (1m and the higher timeframes,
in close order), a ``LateTrade`` for each late trade, each
``Gap`` passed on, and (live) a throttled ``ProvisionalCandle`` (a candle's last provisional state
always comes out, ahead of its final candle). ``split_candles`` splits this output into typed streams.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal, TypeGuard, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

from connectors.metrics import count_late
from connectors.okx.events import Gap
from market.provisional import ProvisionalCandle, ProvisionalThrottle
from market.types import Candle, FeedState, Trade, TradeBatch
from market.watermark import Watermark
from market.windowing import NOTHING, LateTrade, ResumePoint, SeriesWindows

CandleIn = Trade | FeedState | Gap
CandleOut = TradeBatch | Candle | LateTrade | ProvisionalCandle | Gap
ClockPolicy = Literal["event", "wall"]
V = TypeVar("V")
_RECHECK = timedelta(seconds=1)


@dataclass(frozen=True)
class CandleConfig:
    """What the candle step needs to know, resolved from settings by the flow factory."""

    exchange: str = "okx"
    """The exchange whose instruments the per-instrument maps below may name by symbol alone; an entry
    keyed ``exchange|symbol`` is that exchange's (a new series takes the exchange of its first item)."""
    grace: timedelta = timedelta(seconds=2)
    emit_flat: bool = True
    clock: ClockPolicy = "event"
    ends: dict[str, datetime] = field(default_factory=dict)
    """Per instrument end of a finite replay (rule 9); ignored by the live clock."""
    contract_values: dict[str, Decimal] = field(default_factory=dict)
    provisional_every: timedelta | None = None
    """Live only: emit the in-progress 1m candle at most this often (marked provisional, rule 7); an
    update held back is emitted when its slot comes or before the candle's final candle."""
    resume: dict[str, ResumePoint] = field(default_factory=dict)
    """Per instrument, where its stored data ends (a new series starts there; the stored open trades
    are fed again but not re-emitted)."""

    def of(self, entries: Mapping[str, V], exchange: str, symbol: str) -> V | None:
        """The entry of one instrument: keyed ``exchange|symbol``, or by symbol for :attr:`exchange`."""
        found = entries.get(f"{exchange}|{symbol}")
        if found is None and exchange == self.exchange:
            found = entries.get(symbol)
        return found


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
        every = config.provisional_every
        self._throttle = ProvisionalThrottle.every(every) if every is not None else None
        """Paces the provisional candle; never snapshotted (a live view, not state)."""
        if state is not None and config.clock == "wall":
            # Restored from a recovery snapshot: the time since it was taken must not close windows
            # before the source has caught up (it says so with a live FeedState).
            state.clock.live = False

    def _new_state(self, exchange: str, symbol: str, out: list[CandleOut]) -> CandleState:
        config = self.config
        windows = SeriesWindows(
            exchange,
            symbol,
            grace=config.grace,
            emit_flat=config.emit_flat,
            contract_value=config.of(config.contract_values, exchange, symbol) or Decimal(1),
        )
        clock = Watermark(grace=config.grace)
        point = config.of(config.resume, exchange, symbol)
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
            self.state = self._new_state(values[0].exchange, values[0].symbol, out)
        now = datetime.now(UTC)
        if self.state.fresh and (first := next((t for t in values if type(t) is Trade), None)):
            self.state.windows.mark_incomplete(first.ts_event, first.ts_event)
            self.state.fresh = False
        accepted = self._on_items(values, now, out)
        if accepted:
            out.insert(0, TradeBatch(tuple(accepted)))
        if self.config.clock == "wall":
            clock = self.state.clock
            if clock.live is None and (watermark := clock.at(now)) is not None:  # local time counts
                self._closed(self.state.windows.advance(watermark).candles, out)
            self._provisional(now, out)
        return out, StatefulBatchLogic.RETAIN

    def _on_items(self, values: list[CandleIn], now: datetime, out: list[CandleOut]) -> list[Trade]:
        """Each item in order; returns the new (non-duplicate) trades, late ones included."""
        assert self.state is not None
        accepted: list[Trade] = []
        on_trade = self.state.windows.on_trade
        wall = self.config.clock == "wall"
        for item in values:
            if type(item) is Trade:
                if wall:
                    self._observe(item, now)
                emitted = on_trade(item)
                if emitted is NOTHING:  # the common case: folded into an open window
                    accepted.append(item)
                elif not emitted.duplicates:
                    accepted.append(item)
                    out.extend(emitted.late)
                    count_late(emitted.late)
                    self._closed(emitted.candles, out)
            elif isinstance(item, FeedState):
                self._on_feed(item, now, out)
            elif isinstance(item, Gap):
                if not item.filled:
                    self.state.windows.mark_incomplete(item.from_time, item.to_time)
                out.append(item)  # passed on to the database
        return accepted

    def _observe(self, trade: Trade, now: datetime) -> None:
        """Live: a trade moves the clock; with a feed's clock it counts from its receive time."""
        assert self.state is not None
        clock = self.state.clock
        seen = trade.ts_recv if clock.live is not None and trade.ts_recv is not None else now
        clock.observe(trade.ts_event, seen)

    def _on_feed(self, feed: FeedState, now: datetime, out: list[CandleOut]) -> None:
        """Every trade received up to ``heard_at`` came before: the feed's clock moves here, in order,
        so the outputs are a function of the items alone (a recording replays them)."""
        assert self.state is not None
        self.state.clock.on_feed(feed)
        if self.config.clock == "wall" and (watermark := self.state.clock.at(now)) is not None:
            self._closed(self.state.windows.advance(watermark).candles, out)

    def _closed(self, candles: Sequence[Candle], out: list[CandleOut]) -> None:
        """Final candles out, after the held provisional state of the candle they close (so a live
        client sees each candle's last provisional state before its final candle)."""
        if candles:
            if self._throttle is not None:
                out.extend(self._throttle.drain())
            out.extend(candles)

    def _provisional(self, now: datetime, out: list[CandleOut]) -> None:
        """The in-progress 1m candle as of ``now``, through the throttle (live only)."""
        if self._throttle is None or self.state is None:
            return
        candle = self.state.windows.in_progress()
        if candle is not None:
            out.extend(self._throttle.offer(ProvisionalCandle.of(candle, now)))
        out.extend(self._throttle.due(now))

    def on_notify(self) -> tuple[Iterable[CandleOut], bool]:
        out: list[CandleOut] = []
        if self.state is None:
            return out, StatefulBatchLogic.RETAIN
        now = datetime.now(UTC)
        if (watermark := self.state.clock.at(now)) is not None:
            self._closed(self.state.windows.advance(watermark).candles, out)
        if self._throttle is not None:
            out.extend(self._throttle.due(now))
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[CandleOut], bool]:
        if self.config.clock != "event" or self.state is None:
            return (), StatefulBatchLogic.RETAIN
        windows = self.state.windows
        end = self.config.of(self.config.ends, windows.exchange, windows.symbol) or windows.newest_event
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


# -- the step's output, split by what it is for ------------------------------------------------------
@dataclass(frozen=True)
class CandlesOut:
    """The candle step's output streams, each in the step's own order."""

    trades: Stream[TradeBatch]
    """The new trades of each input batch (late ones included: they are stored, TIME.md rule 4)."""
    candles: Stream[Candle]
    """Every final candle, 1m and the higher timeframes, in close order."""
    stored: Stream[Candle | LateTrade | Gap]
    """What the database keeps of the events: final 1m candles (longer timeframes are rollups there),
    late trades and gaps; provisional candles are never stored."""
    live: Stream[Candle | ProvisionalCandle | LateTrade]
    """What the live fan-out publishes: all but gaps, in one stream, so a candle's last provisional
    state stays ahead of its final candle."""
    late: Stream[LateTrade]


def _is_trade_batch(item: CandleOut) -> TypeGuard[TradeBatch]:
    return type(item) is TradeBatch


def _is_final(item: CandleOut) -> TypeGuard[Candle]:
    return type(item) is Candle


def _is_late(item: CandleOut) -> TypeGuard[LateTrade]:
    return type(item) is LateTrade


def _is_stored(item: CandleOut) -> TypeGuard[Candle | LateTrade | Gap]:
    if type(item) is Candle:
        return item.timeframe == "1m"
    return type(item) is LateTrade or type(item) is Gap


def _is_live(item: CandleOut) -> TypeGuard[Candle | ProvisionalCandle | LateTrade]:
    return type(item) is not Gap and type(item) is not TradeBatch


@operator
def split_candles(step_id: str, up: Stream[CandleOut]) -> CandlesOut:
    """Split the candle step's output (unkeyed) into typed streams."""
    split = op.branch("trade_batches", up, _is_trade_batch)
    events = split.falses
    # Candle | LateTrade | ProvisionalCandle | Gap
    return CandlesOut(
        trades=split.trues,
        candles=op.branch("final", events, _is_final).trues,
        stored=op.branch("stored", events, _is_stored).trues,
        live=op.branch("live", events, _is_live).trues,
        late=op.branch("late", events, _is_late).trues,
    )
