"""Candle building: the trades of one interval -> a ``Candle``; candles -> a longer timeframe's candle.

Time rules (the time contract, docs/time.md; explained in docs/candles.md):

- rule 1: a candle covers ``[open, close)``; its open and close prices are those of the first and last
  trades by ``(ts_event, trade_id)``, whatever order the trades were given in;
- rule 2: a candle is stamped with its close (``Candle.time``);
- rule 5: an interval without trades gives a flat candle at the previous close (``flat_candle``);
- rule 6: a longer timeframe is rolled up from shorter candles; flat candles contribute no prices.

Arithmetic is exact: sums and products use a 90-digit decimal context that raises on any rounding.
The only rounded value is ``vwap`` (a quotient), computed to 28 significant digits, half-even.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)

from market.timeframes import TF_1M, Timeframe
from market.types import EPOCH, Candle, Trade

EXACT = Context(
    prec=90, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact]
)
"""Context for sums and products: results are exact or an ``Inexact`` error is raised."""

VWAP_CONTEXT = Context(prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
"""Context for the VWAP quotient: 28 significant digits, half-even."""

ZERO = Decimal(0)
ONE = Decimal(1)

_add = EXACT.add
_mul = EXACT.multiply


def vwap_of(quote_volume: Decimal, volume: Decimal, contract_value: Decimal = ONE) -> Decimal | None:
    """Volume-weighted average price: quote volume / base volume (base = volume x contract value)."""
    base = volume if contract_value == ONE else _mul(volume, contract_value)
    if base == ZERO:
        return None
    return VWAP_CONTEXT.divide(quote_volume, base)


def flat_candle(
    exchange: str, symbol: str, timeframe: Timeframe, open_time: datetime, price: Decimal
) -> Candle:
    """The candle of an interval without trades (rule 5): o=h=l=c=``price`` (the previous close)."""
    return Candle(
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe.name,
        open_time=open_time,
        close_time=open_time + timeframe.length,
        open=price,
        high=price,
        low=price,
        close=price,
        volume=ZERO,
        quote_volume=ZERO,
        trade_count=0,
        vwap=None,
        first_trade_id=None,
        last_trade_id=None,
    )


def _checked(candle: Candle) -> Candle:
    if not (candle.low <= candle.open <= candle.high and candle.low <= candle.close <= candle.high):
        raise AssertionError(f"inconsistent OHLC in {candle!r}")
    return candle


class CandleBuilder:
    """Accumulates the trades of one interval of one series and builds its ``Candle``.

    ``update(trade)`` folds a trade in (any order), ``build(open_time)`` returns the candle of
    ``[open_time, open_time + timeframe)``, ``reset()`` empties the builder for the next interval.

    - ``volume`` is the sum of sizes in the exchange's size unit (contracts for OKX derivatives: ``vol``);
    - ``quote_volume`` is the sum of ``price * size * contract_value`` (OKX ``volCcyQuote``);
    - ``trade_count`` is the sum of ``Trade.count``: one OKX push may aggregate several fills;
    - ``vwap`` = quote volume / (volume x contract value);
    - ``first_trade_id``/``last_trade_id`` are the ids of the open and close trades.

    ``contract_value`` (OKX ``ctVal``, default 1) is for spot and linear contracts, where the contract
    value is in base currency; inverse contracts are not covered.
    The builder does not deduplicate: every trade given to ``update`` is counted.
    """

    __slots__ = (
        "exchange",
        "symbol",
        "timeframe",
        "contract_value",
        "_scaled",
        "_n",
        "_open",
        "_high",
        "_low",
        "_close",
        "_volume",
        "_quote",
        "_count",
        "_first_ts",
        "_first_id",
        "_last_ts",
        "_last_id",
    )

    def __init__(
        self, exchange: str, symbol: str, timeframe: Timeframe = TF_1M, contract_value: Decimal = ONE
    ) -> None:
        if contract_value <= ZERO:
            raise ValueError(f"contract_value must be positive, got {contract_value}")
        self.exchange = exchange
        self.symbol = symbol
        self.timeframe = timeframe
        self.contract_value = contract_value
        self._scaled = contract_value != ONE
        self.reset()

    def reset(self) -> None:
        """Forget every trade: the builder is empty again."""
        self._n = 0
        self._open = self._high = self._low = self._close = ZERO
        self._volume = ZERO
        self._quote = ZERO
        self._count = 0
        self._first_ts = EPOCH
        self._last_ts = EPOCH
        self._first_id = 0
        self._last_id = 0

    @property
    def is_empty(self) -> bool:
        return self._n == 0

    def update(self, trade: Trade) -> None:
        """Fold one trade in; open/close follow ``(ts_event, trade_id)``, not arrival order (rule 1)."""
        price = trade.price
        size = trade.size
        ts = trade.ts_event
        tid = trade.trade_id
        if self._n == 0:
            self._open = self._high = self._low = self._close = price
            self._first_ts = self._last_ts = ts
            self._first_id = self._last_id = tid
        else:
            if price > self._high:
                self._high = price
            elif price < self._low:
                self._low = price
            last_ts = self._last_ts
            if ts > last_ts or (ts == last_ts and tid > self._last_id):
                self._close = price
                self._last_ts = ts
                self._last_id = tid
            else:
                first_ts = self._first_ts
                if ts < first_ts or (ts == first_ts and tid < self._first_id):
                    self._open = price
                    self._first_ts = ts
                    self._first_id = tid
        self._n += 1
        self._count += trade.count
        self._volume = _add(self._volume, size)
        notional = _mul(price, size)
        if self._scaled:
            notional = _mul(notional, self.contract_value)
        self._quote = _add(self._quote, notional)

    def build(self, open_time: datetime, previous_close: Decimal | None = None) -> Candle:
        """The candle of ``[open_time, open_time + timeframe)``.

        With no trades, a flat candle at ``previous_close`` (rule 5); ``ValueError`` if there is none.
        Raises ``ValueError`` if ``open_time`` is not a boundary or a trade lies outside the interval.
        """
        tf = self.timeframe
        if not tf.is_boundary(open_time):
            raise ValueError(f"{open_time} is not a {tf.name} boundary")
        if self._n == 0:
            if previous_close is None:
                raise ValueError("no trades and no previous close: nothing to carry (rule 5)")
            return flat_candle(self.exchange, self.symbol, tf, open_time, previous_close)
        close_time = open_time + tf.length
        first_ts, last_ts = self._first_ts, self._last_ts
        if first_ts < open_time or last_ts >= close_time:
            raise ValueError(f"trades from {first_ts} to {last_ts} outside [{open_time}, {close_time})")
        return _built(self, open_time, close_time)


class RollupBuilder:
    """Combines consecutive shorter candles of one series into one candle of a longer ``timeframe``.

    Rule 6: the result equals the candle built directly from the trades of the interval, so flat
    candles (``trade_count == 0``) contribute no prices: open is the first traded candle's open,
    high/low span traded candles only, close is the last traded candle's close; volumes and trade counts
    are summed; ``vwap`` = quote volume / (volume x ``contract_value``). When nothing traded, ``build``
    gives a flat candle at the previous close. Candles must be given in increasing time order.

    The stream's rollup: ``SeriesWindows`` emits with it the 5m ... 1d candles that indicators, signals
    and the Redis fan-out use, with no database in the path. The database's rollups (docs/sql.md) are
    tested equal to it on the same 1m candles (tests/sql/test_rollup_engines.py).
    """

    __slots__ = (
        "exchange",
        "symbol",
        "timeframe",
        "contract_value",
        "_n",
        "_start",
        "_next_open",
        "_open",
        "_high",
        "_low",
        "_close",
        "_volume",
        "_quote",
        "_count",
        "_first_id",
        "_last_id",
        "_complete",
    )

    def __init__(
        self, exchange: str, symbol: str, timeframe: Timeframe, contract_value: Decimal = ONE
    ) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.timeframe = timeframe
        self.contract_value = contract_value
        self.reset()

    def reset(self) -> None:
        """Forget every candle: the builder is empty again."""
        self._n = 0
        self._start: datetime | None = None
        self._next_open: datetime | None = None
        self._open = self._high = self._low = self._close = ZERO
        self._volume = ZERO
        self._quote = ZERO
        self._count = 0
        self._first_id: int | None = None
        self._last_id: int | None = None
        self._complete = True

    @property
    def is_empty(self) -> bool:
        """True when no traded candle has been folded in (flat candles do not count)."""
        return self._n == 0

    def update(self, candle: Candle) -> None:
        """Fold one shorter candle in; flat candles only advance the expected time order."""
        if self._next_open is not None and candle.open_time < self._next_open:
            raise ValueError(f"candle at {candle.open_time} is out of order (expected >= {self._next_open})")
        if (candle.close_time - candle.open_time) > self.timeframe.length:
            raise ValueError(f"a {candle.timeframe} candle cannot roll up into {self.timeframe.name}")
        if self._start is None:
            self._start = candle.open_time
        self._next_open = candle.close_time
        if not candle.complete:
            self._complete = False
        if candle.trade_count == 0:
            return
        if self._n == 0:
            self._open = candle.open
            self._high = candle.high
            self._low = candle.low
            self._first_id = candle.first_trade_id
        else:
            if candle.high > self._high:
                self._high = candle.high
            if candle.low < self._low:
                self._low = candle.low
        self._close = candle.close
        self._last_id = candle.last_trade_id
        self._n += 1
        self._count += candle.trade_count
        self._volume = _add(self._volume, candle.volume)
        self._quote = _add(self._quote, candle.quote_volume)

    def build(self, open_time: datetime, previous_close: Decimal | None = None) -> Candle:
        """The candle of ``[open_time, open_time + timeframe)`` from the candles given since ``reset``;
        incomplete (``complete=False``) when any of them was."""
        candle = self._build(open_time, previous_close)
        return candle if self._complete else replace(candle, complete=False)

    def _build(self, open_time: datetime, previous_close: Decimal | None) -> Candle:
        tf = self.timeframe
        if not tf.is_boundary(open_time):
            raise ValueError(f"{open_time} is not a {tf.name} boundary")
        close_time = open_time + tf.length
        start, end = self._start, self._next_open
        if start is not None and end is not None and (start < open_time or end > close_time):
            raise ValueError(f"candles over [{start}, {end}) do not fit in [{open_time}, {close_time})")
        if self._n == 0:
            if previous_close is None:
                raise ValueError("no traded candle and no previous close: nothing to carry (rule 5)")
            return flat_candle(self.exchange, self.symbol, tf, open_time, previous_close)
        return _built(self, open_time, close_time)


def rollup(
    candles: Iterable[Candle],
    timeframe: Timeframe,
    previous_close: Decimal | None = None,
    contract_value: Decimal = ONE,
) -> Candle:
    """Roll consecutive shorter candles (all inside one ``timeframe`` interval) into one candle (rule 6).

    ``previous_close`` is the close before the interval, used only when every candle is flat.
    Candles may leave minutes out (series with flat candles turned off, or the first interval of a series).
    """
    items = list(candles)
    if not items:
        raise ValueError("rollup needs at least one candle")
    first = items[0]
    open_time = timeframe.open_of(first.open_time)
    builder = RollupBuilder(first.exchange, first.symbol, timeframe, contract_value)
    for candle in items:
        if (candle.exchange, candle.symbol) != (first.exchange, first.symbol):
            raise ValueError(f"candle of {candle.exchange}/{candle.symbol} in a rollup of {first.symbol}")
        if candle.open_time < open_time:
            raise ValueError(f"candle at {candle.open_time} is before the interval opening {open_time}")
        builder.update(candle)
    return builder.build(open_time, previous_close)


def _built(b: CandleBuilder | RollupBuilder, open_time: datetime, close_time: datetime) -> Candle:
    """The candle a builder holds (both builders keep the same running fields)."""
    return _checked(
        Candle(
            exchange=b.exchange,
            symbol=b.symbol,
            timeframe=b.timeframe.name,
            open_time=open_time,
            close_time=close_time,
            open=b._open,
            high=b._high,
            low=b._low,
            close=b._close,
            volume=b._volume,
            quote_volume=b._quote,
            trade_count=b._count,
            vwap=vwap_of(b._quote, b._volume, b.contract_value),
            first_trade_id=b._first_id,
            last_trade_id=b._last_id,
        )
    )
