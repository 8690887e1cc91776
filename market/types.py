"""Domain types shared by every room: trades, candles, rejects.

Times are timezone-aware UTC ``datetime`` objects (see the time contract, docs/time.md).
Prices and sizes are ``Decimal`` so the exchange's decimal strings survive exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

Side = Literal["buy", "sell"]
SIDES: frozenset[str] = frozenset({"buy", "sell"})

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_from_ms(ms: int) -> datetime:
    """Exact conversion of integer epoch milliseconds to an aware UTC datetime."""
    return EPOCH + timedelta(milliseconds=ms)


def ms_from_utc(ts: datetime) -> int:
    """Exact conversion of an aware datetime to integer epoch milliseconds (truncating sub-ms)."""
    if ts.tzinfo is None:
        raise ValueError("naive datetime: every time in this project is timezone-aware UTC")
    return (ts - EPOCH) // timedelta(milliseconds=1)


@dataclass(slots=True, unsafe_hash=True)
class Trade:
    """One trade print (or one OKX aggregated push: ``count`` fills, ``trade_id`` the last of them).

    ``ts_event`` is the exchange's trade time; ``ts_recv`` when we received it (None for tapes).
    ``side`` is the taker side. Identity is (exchange, symbol, trade_id) -- see TIME.md rule 10.

    Immutable by contract: never assign to a field (use ``dataclasses.replace``). It is not declared
    ``frozen`` because a frozen dataclass takes ~10x longer to construct, and trades are the hot path.
    """

    exchange: str
    symbol: str
    trade_id: int
    price: Decimal
    size: Decimal
    side: Side
    ts_event: datetime
    ts_recv: datetime | None = None
    count: int = 1
    seq_id: int | None = None
    source: str | None = None
    origin: str = "ws"
    """Lineage: ``ws`` (websocket push), ``rest`` (gap backfill) or ``tape`` (replayed file)."""

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.exchange, self.symbol, self.trade_id)

    @property
    def order_key(self) -> tuple[datetime, int]:
        """Order of trades inside a candle: (ts_event, trade_id), TIME.md rule 1."""
        return (self.ts_event, self.trade_id)


@dataclass(frozen=True, slots=True)
class TradeBatch:
    """Trades accepted together (one instrument, arrival order): moved through a dataflow as one item
    so per-item costs are paid per batch, not per trade."""

    trades: tuple[Trade, ...]

    def __len__(self) -> int:
        return len(self.trades)


@dataclass(frozen=True, slots=True)
class CandleBody:
    """What every candle shows, final or provisional: its series, its interval ``[open_time,
    close_time)`` and its OHLCV. Publicly stamped ``time`` = ``close_time`` (TIME.md rule 2)."""

    exchange: str
    symbol: str
    timeframe: str
    open_time: datetime
    close_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trade_count: int
    vwap: Decimal | None

    @property
    def time(self) -> datetime:
        """The public timestamp of a candle: its close (TIME.md rule 2)."""
        return self.close_time


@dataclass(frozen=True, slots=True)
class Candle(CandleBody):
    """An OHLCV candle over ``[open_time, close_time)``, publicly stamped ``time`` = ``close_time``.

    A flat candle (no trades in the interval, TIME.md rule 5) has ``trade_count == 0``, volume 0,
    all four prices equal to the previous close, and ``vwap``/trade ids ``None``.
    """

    first_trade_id: int | None
    last_trade_id: int | None
    complete: bool = True
    """False when trades of the interval are known to be missing (a hole the exchange's REST history
    could not fill, recorded as a gap): the candle is then partial, and says so."""

    @property
    def is_flat(self) -> bool:
        return self.trade_count == 0

    @property
    def key(self) -> tuple[str, str, str, datetime]:
        return (self.exchange, self.symbol, self.timeframe, self.close_time)


@dataclass(frozen=True, slots=True)
class FeedState:
    """Whether one instrument's live feed is known complete up to ``heard_at`` (local time).

    A live source emits one when the state changes and while it stays live (at least every few
    seconds). ``live`` is false while the connection is down, stalled or being backfilled: the candle
    step then holds the instrument's wall-clock watermark, so its windows wait for the missing trades.
    While live, the watermark may advance on wall time only up to ``heard_at`` plus a small allowance:
    a silent socket cannot close candles. ``reason`` says why it is not live.
    """

    exchange: str
    symbol: str
    live: bool
    heard_at: datetime
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that could not be turned into domain data: kept, counted, never dropped silently."""

    raw: bytes
    reason: str
    ts_recv: datetime
    source: str = "okx"


# ---------------------------------------------------------------------------------------------
# Indicator values and strategy signals.

from collections.abc import Iterator, Mapping  # noqa: E402 - kept with the types that use them

Action = Literal["buy", "sell", "flat"]
ACTIONS: frozenset[str] = frozenset({"buy", "sell", "flat"})


class FrozenValues(Mapping[str, float]):
    """An immutable, hashable, picklable mapping name -> float (iterates in name order)."""

    __slots__ = ("_items",)
    _items: tuple[tuple[str, float], ...]

    def __init__(self, values: Mapping[str, float] | None = None) -> None:
        items = tuple(sorted((str(k), float(v)) for k, v in (values or {}).items()))
        object.__setattr__(self, "_items", items)

    def __getitem__(self, key: str) -> float:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("FrozenValues is immutable")

    def __reduce__(self) -> tuple[type[FrozenValues], tuple[dict[str, float]]]:
        return (FrozenValues, (dict(self._items),))

    def __repr__(self) -> str:
        return f"FrozenValues({dict(self._items)!r})"


@dataclass(frozen=True, slots=True)
class IndicatorValue:
    """The outputs of one indicator (by its configured ``label``) for the candle closing at ``time``."""

    exchange: str
    symbol: str
    timeframe: str
    time: datetime
    indicator: str
    values: Mapping[str, float]

    def __post_init__(self) -> None:
        if not isinstance(self.values, FrozenValues):
            object.__setattr__(self, "values", FrozenValues(self.values))

    @property
    def key(self) -> tuple[str, str, str, str, datetime]:
        return (self.exchange, self.symbol, self.timeframe, self.indicator, self.time)


@dataclass(frozen=True, slots=True)
class Signal:
    """A strategy's decision on a closed candle: go long (buy), go short (sell) or close (flat).

    ``time`` is the close of the candle that caused it (TIME.md rule 7: nothing newer was used);
    ``strategy`` is the strategy's label; ``values`` the numbers that triggered it (a FrozenValues, so
    the signal is hashable). A backtest fills it no earlier than the first price after ``time``.
    """

    exchange: str
    symbol: str
    timeframe: str
    time: datetime
    strategy: str
    action: Action
    reason: str
    values: Mapping[str, float]

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"signal action must be one of buy, sell, flat; got {self.action!r}")
        if self.time.tzinfo is None:
            raise ValueError("naive datetime: every time in this project is timezone-aware UTC")
        if not isinstance(self.values, FrozenValues):
            object.__setattr__(self, "values", FrozenValues(self.values))

    @property
    def key(self) -> tuple[str, str, str, str, datetime]:
        return (self.exchange, self.symbol, self.timeframe, self.strategy, self.time)
