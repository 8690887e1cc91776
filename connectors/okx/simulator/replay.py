"""The replay: a clock over merged tapes, the market state it builds, and publication to subscribers.

Times here are integer epoch milliseconds as published (tape time + ``offset_ms``, non-zero with
``--rebase-now``). The market state is what the "exchange" knows at the replay clock: played trades
(served by REST), candle series, and the last push of each channel (sent right after a subscription).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from connectors.okx.simulator import messages
from connectors.okx.simulator.candles import CANDLE_SPECS, CandleSeries
from connectors.okx.simulator.messages import TradesPush
from market.types import Trade, ms_from_utc

log = logging.getLogger("okx-simulator")

Key = tuple[str, str]  # (channel, instId)


class Subscriber(Protocol):
    def push(self, frame: str) -> None: ...


class Hub:
    """Who is subscribed to which (channel, instId)."""

    def __init__(self) -> None:
        self._subscribers: dict[Key, set[Subscriber]] = {}

    def add(self, key: Key, subscriber: Subscriber) -> None:
        self._subscribers.setdefault(key, set()).add(subscriber)

    def remove(self, key: Key, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(key)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._subscribers[key]

    def has(self, key: Key) -> bool:
        return key in self._subscribers

    def publish(self, key: Key, frame: str) -> None:
        for subscriber in tuple(self._subscribers.get(key, ())):
            subscriber.push(frame)


@dataclass(slots=True)
class InstrumentHistory:
    """Played trades of one instrument, in play order, with their ids and published times for lookups."""

    trades: list[Trade] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)


def aggregate(inst_id: str, ts_ms: int, trades: list[Trade], seq_id: int, enabled: bool) -> list[TradesPush]:
    """Trades of one instrument at one ms -> pushes; with ``enabled``, consecutive fills with the same side
    and price and consecutive ids become one push (``count`` fills, last id, summed size) as OKX does."""
    pushes: list[TradesPush] = []
    for trade in trades:
        if pushes and enabled:
            last = pushes[-1]
            if last.side == trade.side and last.price == trade.price and trade.trade_id == last.trade_id + 1:
                pushes[-1] = TradesPush(
                    inst_id,
                    trade.trade_id,
                    last.price,
                    last.size + trade.size,
                    last.side,
                    ts_ms,
                    last.count + 1,
                    last.source,
                    seq_id,
                )
                continue
        pushes.append(
            TradesPush(
                inst_id,
                trade.trade_id,
                trade.price,
                trade.size,
                trade.side,
                ts_ms,
                1,
                trade.source or "0",
                seq_id,
            )
        )
    return pushes


class Market:
    """The exchange's state at the replay clock; publishes pushes to the hub as trades are played."""

    def __init__(
        self,
        instruments: Iterable[str],
        hub: Hub,
        *,
        offset_ms: int = 0,
        legacy: bool = False,
        aggregate_fills: bool = False,
        ct_val: dict[str, Decimal] | None = None,
    ) -> None:
        self.hub = hub
        self.offset_ms = offset_ms
        self.legacy = legacy
        self.aggregate_fills = aggregate_fills
        ct_val = ct_val or {}
        self.instruments = frozenset(instruments)
        self.history = {inst: InstrumentHistory() for inst in self.instruments}
        self.candles = {
            inst: [CandleSeries(spec, ct_val.get(inst)) for spec in CANDLE_SPECS.values()]
            for inst in self.instruments
        }
        self.last_push: dict[str, TradesPush] = {}
        self.last_trade: dict[str, Trade] = {}
        self.seq = dict.fromkeys(self.instruments, 0)
        self.played = 0
        self.pushed = 0
        self.clock_ms: int | None = None

    def _publish(self, key: Key, frame: str) -> None:
        self.pushed += 1
        self.hub.publish(key, frame)

    def advance(self, now_ms: int, live: bool = True) -> None:
        """Move the clock to ``now_ms``: close candles ending by then, push due forming updates."""
        self.clock_ms = now_ms
        hub = self.hub
        for inst, series_list in self.candles.items():
            for series in series_list:
                close = series.close_ms
                if close is None:
                    continue
                key = (series.spec.channel, inst)
                if now_ms >= close:
                    for row in series.advance(now_ms):
                        if live and hub.has(key):
                            self._publish(key, messages.candle_push(key[0], inst, row))
                forming = series.forming_due(now_ms) if series.dirty else None
                if forming is not None and live and hub.has(key):
                    self._publish(key, messages.candle_push(key[0], inst, forming))

    def next_deadline(self) -> int | None:
        deadlines = [
            d
            for series_list in self.candles.values()
            for s in series_list
            if (d := s.next_deadline()) is not None
        ]
        return min(deadlines) if deadlines else None

    def play(self, ts_ms: int, batch: list[Trade], live: bool = True) -> None:
        """Play all trades stamped ``ts_ms`` (call ``advance(ts_ms)`` first)."""
        by_inst: dict[str, list[Trade]] = {}
        for trade in batch:
            by_inst.setdefault(trade.symbol, []).append(trade)
        for inst, trades in by_inst.items():
            pushes = self._record(inst, ts_ms, trades)
            if live:
                self._push_trades(inst, ts_ms, trades, pushes)
            else:
                for series in self.candles[inst]:
                    series.forming_due(ts_ms)

    def _record(self, inst: str, ts_ms: int, trades: list[Trade]) -> list[TradesPush]:
        """Add one instrument's trades at ``ts_ms`` to its history and candles; return their pushes."""
        history = self.history[inst]
        series_list = self.candles[inst]
        for trade in trades:
            history.trades.append(trade)
            history.ids.append(trade.trade_id)
            history.times.append(ts_ms)
            quote = trade.price * trade.size
            for series in series_list:
                series.add(ts_ms, trade.price, trade.size, quote)
        self.played += len(trades)
        self.seq[inst] += 1
        pushes = aggregate(inst, ts_ms, trades, self.seq[inst], self.aggregate_fills)
        self.last_push[inst] = pushes[-1]
        self.last_trade[inst] = trades[-1]
        return pushes

    def _push_trades(self, inst: str, ts_ms: int, trades: list[Trade], pushes: list[TradesPush]) -> None:
        """Publish one instrument's trades at ``ts_ms`` to its subscribers, then due forming candles."""
        hub = self.hub
        key = ("trades", inst)
        if hub.has(key):
            for push in pushes:
                self._publish(key, messages.trades_push(push, self.legacy))
        key = ("trades-all", inst)
        if hub.has(key):
            for trade in trades:
                self._publish(key, messages.trades_all_push(trade, ts_ms, self.legacy))
        for series in self.candles[inst]:
            forming = series.forming_due(ts_ms)
            key = (series.spec.channel, inst)
            if forming is not None and hub.has(key):
                self._publish(key, messages.candle_push(key[0], inst, forming))

    def finish(self) -> None:
        """End of the tapes: push forming updates still held back by the 1/s throttle."""
        for inst, series_list in self.candles.items():
            for series in series_list:
                if series.dirty:
                    series.last_push_ms = None
                    row = series.forming_due(self.clock_ms or 0)
                    key = (series.spec.channel, inst)
                    if row is not None and self.hub.has(key):
                        self._publish(key, messages.candle_push(key[0], inst, row))

    def initial_frames(self, channel: str, inst: str) -> list[str]:
        """What a new subscription gets first: the latest past trade, or the forming candle."""
        if channel == "trades":
            push = self.last_push.get(inst)
            return [] if push is None else [messages.trades_push(push, self.legacy)]
        if channel == "trades-all":
            trade = self.last_trade.get(inst)
            if trade is None:
                return []
            ts_ms = ms_from_utc(trade.ts_event) + self.offset_ms
            return [messages.trades_all_push(trade, ts_ms, self.legacy)]
        spec = CANDLE_SPECS.get(channel)
        if spec is None or inst not in self.candles:
            return []
        for series in self.candles[inst]:
            if series.spec is spec:
                row = series.current_row()
                return [] if row is None else [messages.candle_push(channel, inst, row)]
        return []


Batch = tuple[int, list[Trade]]


def batches(trades: Iterator[Trade], offset_ms: int) -> Iterator[Batch]:
    """Group a time-ordered trade stream into (published ms, trades at that ms)."""
    current: list[Trade] = []
    current_ms = 0
    for trade in trades:
        ts_ms = ms_from_utc(trade.ts_event) + offset_ms
        if current and ts_ms != current_ms:
            yield current_ms, current
            current = []
        current_ms = ts_ms
        current.append(trade)
    if current:
        yield current_ms, current


class Replay:
    """Plays batches against the market on a clock running ``speed`` times real time (0: no waiting).

    ``anchor``: the event loop time at which the clock reads ``start_ms`` (a replay rebased to the
    current time anchors it where the rebase read the time, so the time spent loading the tapes and
    playing the history does not put every push behind its own timestamp); default: when ``run`` starts.
    """

    def __init__(
        self,
        market: Market,
        trades: Iterator[Trade],
        *,
        speed: float,
        start_ms: int | None,
        anchor: float | None = None,
    ) -> None:
        self.market = market
        self.speed = speed
        self._batches = batches(trades, market.offset_ms)
        self._pending: Batch | None = next(self._batches, None)
        self.start_ms = start_ms if start_ms is not None else (self._pending[0] if self._pending else 0)
        self.finished = asyncio.Event()
        self._anchor = anchor
        self._wall0 = 0.0 if anchor is None else anchor

    def play_history(self) -> int:
        """Play, without pushing, every trade before the start time (REST history, latest past trade)."""
        count = 0
        while self._pending is not None and self._pending[0] < self.start_ms:
            ts_ms, batch = self._pending
            self.market.advance(ts_ms, live=False)
            self.market.play(ts_ms, batch, live=False)
            count += len(batch)
            self._pending = next(self._batches, None)
        return count

    def now_ms(self) -> int:
        if self.speed == 0:
            return self.market.clock_ms if self.market.clock_ms is not None else self.start_ms
        elapsed = asyncio.get_running_loop().time() - self._wall0
        return self.start_ms + int(elapsed * 1000 * self.speed)

    async def _wait_until(self, target_ms: int) -> None:
        while True:
            now = self.now_ms()
            if now >= target_ms:
                return
            deadline = self.market.next_deadline()
            wake = target_ms if deadline is None else max(now, min(target_ms, deadline))
            if wake > now:
                await asyncio.sleep((wake - now) / 1000 / self.speed)
            else:
                await asyncio.sleep(0)
            now = min(self.now_ms(), target_ms)
            if now > (self.market.clock_ms or 0):
                self.market.advance(now)

    async def run(self) -> None:
        if self._anchor is None:
            self._wall0 = asyncio.get_running_loop().time()
        log.info("replay started at %d ms, speed %g", self.start_ms, self.speed)
        if self.market.clock_ms is None or self.market.clock_ms < self.start_ms:
            self.market.advance(self.start_ms)
        while self._pending is not None:
            ts_ms, batch = self._pending
            if self.speed > 0:
                await self._wait_until(ts_ms)
            self.market.advance(ts_ms)
            self.market.play(ts_ms, batch)
            self._pending = next(self._batches, None)
            await asyncio.sleep(0)  # let sessions send, also while catching up with the clock
        self.market.finish()
        log.info(
            "replay finished: %d trades played, %d pushes; serving idle",
            self.market.played,
            self.market.pushed,
        )
        self.finished.set()
