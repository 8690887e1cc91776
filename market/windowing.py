"""Event-time windows of one series (one exchange + symbol): trades in, final candles out.

``SeriesWindows`` is the pure state machine a stateful stream step wraps; it never reads a clock, so a
replay is deterministic. ``market.watermark.Watermark`` is the live clock policy that computes the
watermark to give it.
Rule numbers refer to the time contract (docs/time.md); docs/candles.md explains each choice.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from market.candles import ONE, CandleBuilder, RollupBuilder, flat_candle
from market.idruns import BELOW_ALL, ClosedIds
from market.timeframes import TF_1D, TF_1H, TF_1M, TF_4H, TF_5M, TF_15M, Timeframe
from market.types import EPOCH, Candle, Trade
from market.watermark import DEFAULT_GRACE
from market.window_items import NOTHING, Emitted, LateTrade, ResumePoint

MINUTE = TF_1M.length
DEFAULT_TIMEFRAMES: tuple[Timeframe, ...] = (TF_1M, TF_5M, TF_15M, TF_1H, TF_4H, TF_1D)

DEFAULT_DEDUP_RETENTION = timedelta(hours=1)
_NEVER = datetime.max.replace(tzinfo=UTC)
_ZERO = timedelta(0)
__all__ = ["NOTHING", "Emitted", "LateTrade", "ResumePoint", "SeriesWindows"]


_ONE_DUPLICATE = Emitted(duplicates=1)


class SeriesWindows:
    """Event-time candle windows of one series, emitting each candle once, when final (rules 1-6, 8-10).

    The watermark is ``max(every watermark given to advance/finish, newest ts_event seen - grace)``; it
    never goes back. A 1m window ``[open, close)`` is emitted when the watermark reaches ``close``
    (``close <= watermark``); a trade whose 1m window is already closed is late: it is returned as a
    ``LateTrade`` and changes nothing. Longer timeframes are rolled up from the emitted 1m candles and
    emitted right after their last minute. Empty minutes after the first trade give flat candles unless
    ``emit_flat`` is False; nothing is emitted before the first trade.

    Duplicates (same trade id; the exchange and symbol are fixed per instance) are dropped while their id
    is remembered: ids of trades in open windows, and of closed windows whose close is within
    ``dedup_retention`` of the watermark (event time). An older repeat is reported late instead: either
    way it changes no candle. State: open windows, one rollup per longer timeframe, the last close and
    the remembered ids (a set for the open windows; compact runs per minute once a window closes, so
    ids must fit 64 bits, see ``market.idruns``).
    """

    __slots__ = (
        "exchange",
        "symbol",
        "grace",
        "timeframes",
        "emit_flat",
        "contract_value",
        "dedup_retention",
        "_emit_1m",
        "_rollups",
        "_windows",
        "_ids",
        "_seen",
        "_closed_ids",
        "_top_id",
        "_cur_open",
        "_cur_close",
        "_cur",
        "_cur_ids",
        "_cursor",
        "_due",
        "_newest",
        "_watermark",
        "_last_close",
        "_incomplete",
    )

    def __init__(
        self,
        exchange: str,
        symbol: str,
        grace: timedelta = DEFAULT_GRACE,
        timeframes: Sequence[Timeframe] = DEFAULT_TIMEFRAMES,
        emit_flat: bool = True,
        contract_value: Decimal = ONE,
        dedup_retention: timedelta = DEFAULT_DEDUP_RETENTION,
    ) -> None:
        if grace < _ZERO or dedup_retention < _ZERO:
            raise ValueError("grace and dedup_retention must not be negative")
        ordered = sorted(set(timeframes), key=lambda tf: tf.length)
        if not ordered or any(tf.length % MINUTE or tf.length < MINUTE for tf in ordered):
            raise ValueError(f"timeframes must be whole minutes, got {[tf.name for tf in timeframes]}")
        self.exchange = exchange
        self.symbol = symbol
        self.grace = grace
        self.timeframes = tuple(ordered)
        self.emit_flat = emit_flat
        self.contract_value = contract_value
        self.dedup_retention = dedup_retention
        self._emit_1m = ordered[0] == TF_1M
        self._rollups = tuple(
            (RollupBuilder(exchange, symbol, tf, contract_value), tf.length // MINUTE)
            for tf in ordered
            if tf.length > MINUTE
        )
        # 1m windows are keyed by their minute number m (open = EPOCH + m minutes)
        self._windows: dict[int, CandleBuilder] = {}  # open 1m windows
        self._ids: dict[int, list[int]] = {}  # remembered trade ids of the open windows, by 1m window
        self._seen: set[int] = set()  # the same ids, for the duplicate check
        self._closed_ids = ClosedIds()  # remembered trade ids of closed windows, by 1m window
        self._top_id = BELOW_ALL  # no id above it was ever remembered: a feed's next id needs no lookup
        self._cur_open = self._cur_close = EPOCH  # cache of the 1m window the last trade went to
        self._cur = CandleBuilder(exchange, symbol, TF_1M, contract_value)  # unused until a trade comes
        self._cur_ids: list[int] = []
        self._cursor: int | None = None  # the next 1m window to emit
        self._due = _NEVER  # its close
        self._newest: datetime | None = None
        self._watermark: datetime | None = None
        self._last_close: Decimal | None = None
        self._incomplete: list[tuple[int, int]] = []  # 1m windows (first, last minute) missing trades

    def __setstate__(self, state: tuple[None, dict[str, object]]) -> None:
        """Restore (pickle, copy), also from a recovery snapshot of the former layout, which held every
        remembered id in ``_seen`` and ``_ids``: the closed windows' ids move to their compact memory."""
        for name, value in state[1].items():
            object.__setattr__(self, name, value)
        if "_closed_ids" not in state[1]:
            self._closed_ids = ClosedIds()
            self._top_id = max(self._seen, default=BELOW_ALL)
            for minute in [m for m in self._ids if m not in self._windows]:
                ids = self._ids.pop(minute)
                self._closed_ids.close(minute, ids)
                self._seen.difference_update(ids)

    def __deepcopy__(self, memo: dict[int, object]) -> SeriesWindows:
        """A copy sharing nothing mutable with this one (for snapshots), made without walking every
        remembered id: ids are ints, builders hold only immutable values."""
        clone = copy.copy(self)
        clone._windows = {minute: copy.copy(builder) for minute, builder in self._windows.items()}
        clone._ids = {minute: list(ids) for minute, ids in self._ids.items()}
        clone._seen = set(self._seen)
        clone._closed_ids = copy.deepcopy(self._closed_ids)
        clone._rollups = tuple((copy.copy(rollup), span) for rollup, span in self._rollups)
        clone._incomplete = list(self._incomplete)
        # The cache of the current window points into the windows and ids: to their copies.
        current = next((m for m, builder in self._windows.items() if builder is self._cur), None)
        clone._cur = copy.copy(self._cur) if current is None else clone._windows[current]
        owner = next((m for m, ids in self._ids.items() if ids is self._cur_ids), None)
        clone._cur_ids = list(self._cur_ids) if owner is None else clone._ids[owner]
        memo[id(self)] = clone
        return clone

    @property
    def watermark(self) -> datetime | None:
        return self._watermark

    @property
    def newest_event(self) -> datetime | None:
        return self._newest

    @property
    def last_close(self) -> Decimal | None:
        """Close of the last traded 1m candle emitted: the price flat candles carry."""
        return self._last_close

    @property
    def next_close(self) -> datetime | None:
        """Close of the next 1m window to emit: the watermark must reach it (None before any trade)."""
        return None if self._due == _NEVER else self._due

    @property
    def open_windows(self) -> int:
        return len(self._windows)

    @property
    def remembered_ids(self) -> int:
        return len(self._seen) + len(self._closed_ids)

    def on_trade(self, trade: Trade) -> Emitted:
        """Take one trade (any arrival order); return the candles it closed, or it as late/duplicate."""
        if trade.symbol != self.symbol or trade.exchange != self.exchange:
            raise ValueError(f"{trade.exchange}/{trade.symbol} trade given to {self.exchange}/{self.symbol}")
        tid = trade.trade_id
        if tid > self._top_id:
            self._top_id = tid
        elif tid in self._seen or (tid <= self._closed_ids.high and tid in self._closed_ids):
            return _ONE_DUPLICATE
        ts = trade.ts_event
        if not self._cur_open <= ts < self._cur_close:
            minute = (ts - EPOCH) // MINUTE
            close = EPOCH + (minute + 1) * MINUTE
            wm = self._watermark
            if wm is not None and close <= wm:
                return self._late(trade, minute, close, wm)
            self._enter(minute, close)
        self._cur.update(trade)
        self._seen.add(tid)
        self._cur_ids.append(tid)
        newest = self._newest
        if newest is None or ts > newest:
            self._newest = ts
            wm = ts - self.grace
            if wm >= self._due:
                return self._advance_to(wm)
            current = self._watermark
            if current is None or wm > current:
                self._watermark = wm
        return NOTHING

    def on_trades(self, trades: Iterable[Trade]) -> Emitted:
        """``on_trade`` for each trade in order, results concatenated."""
        candles: list[Candle] = []
        late: list[LateTrade] = []
        duplicates = 0
        for trade in trades:
            out = self.on_trade(trade)
            if out is not NOTHING:
                candles.extend(out.candles)
                late.extend(out.late)
                duplicates += out.duplicates
        return Emitted(tuple(candles), tuple(late), duplicates)

    def in_progress(self) -> Candle | None:
        """The newest still-open 1m window as a candle built from the trades seen so far, for live
        display only (TIME.md rule 7: it is provisional and feeds nothing); None if no window is open."""
        traded = [m for m, builder in self._windows.items() if not builder.is_empty]
        if not traded:
            return None
        minute = max(traded)
        return self._windows[minute].build(EPOCH + minute * MINUTE, self._last_close)

    def resume(self, point: ResumePoint) -> Emitted:
        """Continue where stored data ends (a fresh instance only): the next window to emit is the one
        after ``point.last_candle``, flat candles carry its close, the longer timeframes' open intervals
        hold their stored minutes, and the open windows get the stored trades (whose candles it returns
        if those trades already close some)."""
        if self._watermark is not None or self._windows:
            raise ValueError("resume() is for a series that has seen nothing yet")
        last = point.last_candle
        if last is None:
            return self.on_trades(point.open_trades)
        if (last.exchange, last.symbol, last.timeframe) != (self.exchange, self.symbol, TF_1M.name):
            raise ValueError(f"{last.symbol} {last.timeframe} candle given to resume {self.symbol} 1m")
        cursor = (last.close_time - EPOCH) // MINUTE
        self._cursor = cursor
        self._due = last.close_time + MINUTE
        self._watermark = last.close_time
        self._last_close = last.close
        for rollup, span in self._rollups:
            start = EPOCH + (cursor // span) * span * MINUTE
            for candle in point.period_candles:
                if start < candle.close_time <= last.close_time:
                    rollup.update(candle)
        return self.on_trades(point.open_trades)

    def mark_incomplete(self, first: datetime | None, last: datetime | None) -> None:
        """Trades between ``first`` and ``last`` (event times; None: from the next window to emit, or up
        to ``first``) are known to be missing: the 1m candles of those minutes, and every longer candle
        containing them, are emitted with ``complete=False``. Minutes already emitted stay as they are."""
        start = self._cursor if first is None else (first - EPOCH) // MINUTE
        end = (last - EPOCH) // MINUTE if last is not None else start
        start = end if start is None else start
        if start is None or end is None:
            return
        if self._cursor is not None:
            start = max(start, self._cursor)
        if start <= end:
            self._incomplete.append((start, end))

    def advance(self, watermark: datetime) -> Emitted:
        """Move the watermark to ``watermark`` if that is later (e.g. the live clock while quiet, rule 3)."""
        if watermark.tzinfo is None:
            raise ValueError("naive datetime: watermarks are timezone-aware UTC")
        return self._advance_to(watermark)

    def finish(self, end: datetime) -> Emitted:
        """End of a finite replay at ``end`` (rule 9): emit every window closing at or before ``end``;
        windows closing after it are incomplete and never emitted. Raises if one was already emitted."""
        if end.tzinfo is None:
            raise ValueError("naive datetime: the end of a replay is timezone-aware UTC")
        if self._last_close is not None and self._cursor is not None:
            emitted_to = EPOCH + self._cursor * MINUTE
            if emitted_to > end:
                raise ValueError(f"windows up to {emitted_to} were already emitted, after the end {end}")
        return self._advance_to(end)

    def _enter(self, minute: int, close: datetime) -> None:
        """Point the cache at the (still open) 1m window ``minute``, ending at ``close``; create it if new."""
        builder = self._windows.get(minute)
        if builder is None:
            builder = CandleBuilder(self.exchange, self.symbol, TF_1M, self.contract_value)
            self._windows[minute] = builder
            if self._cursor is None or minute < self._cursor:
                self._cursor = minute
                self._due = close
        ids = self._ids.get(minute)
        if ids is None:
            ids = self._ids[minute] = []
        self._cur_open, self._cur_close, self._cur, self._cur_ids = close - MINUTE, close, builder, ids

    def _late(self, trade: Trade, minute: int, close: datetime, wm: datetime) -> Emitted:
        if close > wm - self.dedup_retention:  # remember it, so a repeat is a duplicate (rule 10)
            self._closed_ids.add(minute, trade.trade_id)
        return Emitted(late=(LateTrade(trade, close, wm),))

    def _advance_to(self, wm: datetime) -> Emitted:
        current = self._watermark
        if current is not None and wm <= current:
            return NOTHING
        self._watermark = wm
        if wm < self._due:
            return NOTHING
        minute = self._cursor
        assert minute is not None  # _due is finite only once a window exists
        out: list[Candle] = []
        minute = self._close_until(minute, (wm - EPOCH) // MINUTE, out)
        self._move_cursor(minute, wm)
        return Emitted(tuple(out)) if out else NOTHING

    def _close_until(self, minute: int, closed_to: int, out: list[Candle]) -> int:
        """Emit into ``out`` the 1m windows from ``minute`` up to (not including) ``closed_to`` and the
        longer candles they complete; return the next minute to emit."""
        rollups = self._rollups
        while minute < closed_to:
            if not self._close_minute(minute, out):
                return closed_to  # nothing can be emitted before the watermark: skip the quiet minutes
            minute += 1
            for rollup, span in rollups:
                if minute % span == 0:
                    if self.emit_flat or not rollup.is_empty:
                        close = EPOCH + minute * MINUTE
                        out.append(rollup.build(close - rollup.timeframe.length, self._last_close))
                    rollup.reset()
        return minute

    def _close_minute(self, minute: int, out: list[Candle]) -> bool:
        """Emit the closed 1m window ``minute`` (traded, or flat by policy) and feed it to the rollups.
        False when there is nothing to emit from here on until a trade comes."""
        builder = self._windows.pop(minute, None)
        ids = self._ids.pop(minute, None)
        if ids:  # its ids move to the compact memory of closed windows
            self._closed_ids.close(minute, ids)
            self._seen.difference_update(ids)
        if builder is not None:
            candle = builder.build(EPOCH + minute * MINUTE)
            if self._incomplete and self._is_incomplete(minute):
                candle = replace(candle, complete=False)
            self._last_close = candle.close
            if self._emit_1m:
                out.append(candle)
            for rollup, _ in self._rollups:
                rollup.update(candle)
        elif self.emit_flat:
            flat = self._flat(minute)
            if self._incomplete and self._is_incomplete(minute):
                flat = replace(flat, complete=False)
                for rollup, _ in self._rollups:
                    rollup.update(flat)
            if self._emit_1m:
                out.append(flat)
        elif (
            not self._windows and all(rollup.is_empty for rollup, _ in self._rollups) and not self._incomplete
        ):
            return False
        return True

    def _move_cursor(self, minute: int, wm: datetime) -> None:
        """After emitting up to ``minute`` at ``wm``: next window due, trade cache, ids, incomplete ranges."""
        self._cursor = minute
        self._due = EPOCH + (minute + 1) * MINUTE
        if self._cur_close <= wm:
            self._cur_open = self._cur_close = EPOCH
            self._cur_ids = []
        self._closed_ids.forget((wm - self.dedup_retention - EPOCH) // MINUTE)  # bounded dedup memory
        if self._incomplete:
            self._incomplete = [(a, b) for a, b in self._incomplete if b >= minute]

    def _is_incomplete(self, minute: int) -> bool:
        return any(a <= minute <= b for a, b in self._incomplete)

    def _flat(self, minute: int) -> Candle:
        if self._last_close is None:  # the first emitted window always holds the first trade
            raise AssertionError("flat candle before the first trade")
        return flat_candle(self.exchange, self.symbol, TF_1M, EPOCH + minute * MINUTE, self._last_close)
