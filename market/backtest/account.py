"""A simulated spot account driven by strategy signals: fills at the next candle's open, equity at each close.

A signal stamped T (the close of the candle that caused it) waits until the first candle whose open
instant is at or after T and fills at that candle's open (TIME.md rule 7: never an earlier price). When
several signals are due at the same candle, only the latest one acts: no price existed between them, so
the stance the strategy holds at the fill is the only one that can be traded. Equity is marked at every
candle's close. All arithmetic is IEEE-754 double precision with no intermediate rounding.

Formulas (fee ``f``, slippage ``s``, fractions):

- buying (opening a long or covering a short) fills at ``p = open * (1 + s)``; selling (closing a long or
  opening a short) at ``p = open * (1 - s)``;
- an entry's quantity is ``q = fraction * cash / (p * (1 + f))``, its fee ``q * p * f``;
- a buy moves ``cash -= q * p * (1 + f)``, a sell ``cash += q * p * (1 - f)``;
- a trade's pnl = what its sell brought in minus what its buy cost, both net of fees; an open trade's
  pnl is marked at the last close without an exit fee, so equity = start cash + sum of all pnl.
"""

from __future__ import annotations

from bisect import bisect_right, insort_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Literal, NamedTuple, overload

from market.types import ACTIONS, Action, Candle, Signal

Side = Literal["long", "short"]


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """Starting cash (quote), the fraction of cash committed per entry, fee and slippage (fractions)."""

    cash: float = 10_000.0
    fraction: float = 1.0
    fee: float = 0.001
    slippage: float = 0.0
    short: bool = False

    def __post_init__(self) -> None:
        if not self.cash > 0:
            raise ValueError(f"account cash must be > 0, got {self.cash}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"account fraction must be in (0, 1], got {self.fraction}")
        if not 0 <= self.fee < 1:
            raise ValueError(f"account fee must be in [0, 1), got {self.fee}")
        if not 0 <= self.slippage < 1:
            raise ValueError(f"account slippage must be in [0, 1), got {self.slippage}")

    @classmethod
    def from_bps(
        cls,
        cash: float = 10_000.0,
        fraction: float = 1.0,
        fee_bps: float = 10.0,
        slippage_bps: float = 0.0,
        short: bool = False,
    ) -> AccountSettings:
        """Settings with fee and slippage given in basis points (10 bps = 0.001)."""
        return cls(cash, fraction, fee_bps / 10_000, slippage_bps / 10_000, short)


@dataclass(frozen=True, slots=True)
class Fill:
    """One simulated execution at the open of the candle opening at ``time`` (``signal_time <= time``)."""

    time: datetime
    signal_time: datetime
    side: Literal["buy", "sell"]
    price: float
    quantity: float
    fee: float


@dataclass(frozen=True, slots=True)
class BacktestTrade:
    """A round trip (``open`` False) or the position still held (``open`` True, marked at the last close)."""

    side: Side
    entry_time: datetime
    entry_price: float
    exit_time: datetime | None
    exit_price: float | None
    quantity: float
    pnl: float
    fees: float
    open: bool


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """The account at a candle's close ``time``: cash, signed position and ``cash + position * close``."""

    time: datetime
    close: float
    cash: float
    position: float
    equity: float


class AccountEvents(NamedTuple):
    """What a candle's open did to the account: the fills and the trades they closed."""

    fills: tuple[Fill, ...]
    closed: tuple[BacktestTrade, ...]


@dataclass(frozen=True, slots=True)
class AccountStep:
    """One candle's effect: fills at its open, trades closed by them, the equity at its close."""

    fills: tuple[Fill, ...]
    closed: tuple[BacktestTrade, ...]
    equity: EquityPoint


class _Entry(NamedTuple):
    side: Side
    time: datetime
    price: float
    quantity: float
    fee: float


_NO_EVENTS = AccountEvents((), ())
_signal_time = itemgetter(0)


class Account:
    """The simulated account; incremental and picklable, so one object serves a backtest or a live bot.

    ``on_signal`` queues a signal; ``on_candle`` (or ``on_bar`` on floats) fills what is due at the
    candle's open and marks equity at its close. After each candle ``cash``, ``position`` (signed
    quantity), ``equity``, ``last_close`` and ``last_time`` describe the account.
    """

    __slots__ = ("settings", "cash", "position", "equity", "last_close", "last_time", "_entry", "_pending")

    def __init__(self, settings: AccountSettings | None = None) -> None:
        self.settings = settings if settings is not None else AccountSettings()
        self.cash = self.settings.cash
        self.position = 0.0
        self.equity = self.settings.cash
        self.last_close: float | None = None
        self.last_time: datetime | None = None
        self._entry: _Entry | None = None
        self._pending: list[tuple[datetime, Action]] = []

    def __getstate__(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def on_signal(self, signal: Signal) -> None:
        """Queue a signal: it fills at the open of the first candle whose open time is >= its time."""
        self.on_action(signal.time, signal.action)

    def on_action(self, time: datetime, action: Action) -> None:
        """``on_signal`` for a bare (time, action) pair (kept in time order, arrival order on ties)."""
        if action not in ACTIONS:
            raise ValueError(f"signal action must be one of buy, sell, flat; got {action!r}")
        pending = self._pending
        if pending and time < pending[-1][0]:
            insort_right(pending, (time, action), key=_signal_time)
        else:
            pending.append((time, action))

    def on_candle(self, candle: Candle) -> AccountStep:
        """Fill what is due at the candle's open, then mark equity at its close."""
        events = self.on_bar(candle.open_time, candle.close_time, float(candle.open), float(candle.close))
        return AccountStep(events.fills, events.closed, self.equity_point())

    def on_bar(self, open_time: datetime, close_time: datetime, open: float, close: float) -> AccountEvents:
        """``on_candle`` on floats: the fast path. Read the marked state from the attributes."""
        events = _NO_EVENTS
        pending = self._pending
        if pending and pending[0][0] <= open_time:
            events = self._fill_due(open_time, open)
        self.last_close = close
        self.last_time = close_time
        self.equity = self.cash + self.position * close
        return events

    def equity_point(self) -> EquityPoint:
        """The account as marked at the last candle's close."""
        if self.last_time is None or self.last_close is None:
            raise ValueError("no candle yet: equity is marked at a candle's close")
        return EquityPoint(self.last_time, self.last_close, self.cash, self.position, self.equity)

    def open_trade(self) -> BacktestTrade | None:
        """The position still held, marked at the last close (pnl without an exit fee), or None."""
        entry = self._entry
        if entry is None or self.last_close is None:
            return None
        value = entry.quantity * self.last_close
        cost = entry.quantity * entry.price
        pnl = value - (cost + entry.fee) if entry.side == "long" else (cost - entry.fee) - value
        return BacktestTrade(
            entry.side, entry.time, entry.price, None, None, entry.quantity, pnl, entry.fee, True
        )

    def _fill_due(self, open_time: datetime, open: float) -> AccountEvents:
        pending = self._pending
        due = bisect_right(pending, open_time, key=_signal_time)
        due_time, action = pending[due - 1]
        del pending[:due]
        return self._act(due_time, action, open_time, open)

    def _act(self, signal_time: datetime, action: Action, time: datetime, open: float) -> AccountEvents:
        entry = self._entry
        held = 0 if entry is None else (1 if entry.side == "long" else -1)
        if action == "buy":
            target = 1
        elif action == "sell" and self.settings.short:
            target = -1
        else:
            target = 0
        if target == held:
            return _NO_EVENTS
        fills: list[Fill] = []
        closed: tuple[BacktestTrade, ...] = ()
        if entry is not None:
            fill, trade = self._exit(entry, signal_time, time, open)
            fills.append(fill)
            closed = (trade,)
        if target != 0 and self.cash > 0:
            fills.append(self._enter("long" if target > 0 else "short", signal_time, time, open))
        return AccountEvents(tuple(fills), closed)

    def _enter(self, side: Side, signal_time: datetime, time: datetime, open: float) -> Fill:
        s = self.settings
        price = open * (1 + s.slippage) if side == "long" else open * (1 - s.slippage)
        quantity = s.fraction * self.cash / (price * (1 + s.fee))
        notional = quantity * price
        fee = notional * s.fee
        if side == "long":
            self.cash -= notional * (1 + s.fee)
            self.position = quantity
        else:
            self.cash += notional * (1 - s.fee)
            self.position = -quantity
        self._entry = _Entry(side, time, price, quantity, fee)
        return Fill(time, signal_time, "buy" if side == "long" else "sell", price, quantity, fee)

    def _exit(
        self, entry: _Entry, signal_time: datetime, time: datetime, open: float
    ) -> tuple[Fill, BacktestTrade]:
        s = self.settings
        q = entry.quantity
        entry_notional = q * entry.price
        if entry.side == "long":
            price = open * (1 - s.slippage)
            notional = q * price
            fee = notional * s.fee
            self.cash += notional * (1 - s.fee)
            pnl = (notional - fee) - (entry_notional + entry.fee)
        else:
            price = open * (1 + s.slippage)
            notional = q * price
            fee = notional * s.fee
            self.cash -= notional * (1 + s.fee)
            pnl = (entry_notional - entry.fee) - (notional + fee)
        self.position = 0.0
        self._entry = None
        side: Literal["buy", "sell"] = "sell" if entry.side == "long" else "buy"
        trade = BacktestTrade(
            entry.side, entry.time, entry.price, time, price, q, pnl, entry.fee + fee, False
        )
        return Fill(time, signal_time, side, price, q, fee), trade


class EquityCurve(Sequence[EquityPoint]):
    """Equity points stored by column (cheap to grow, fast for ``compute_metrics``); a sequence of points."""

    __slots__ = ("times", "closes", "cash", "positions", "equity")

    def __init__(self) -> None:
        self.times: list[datetime] = []
        self.closes: list[float] = []
        self.cash: list[float] = []
        self.positions: list[float] = []
        self.equity: list[float] = []

    def record(self, account: Account) -> None:
        """Append the account as marked at its last candle's close."""
        if account.last_time is None or account.last_close is None:
            raise ValueError("no candle yet: equity is marked at a candle's close")
        self.times.append(account.last_time)
        self.closes.append(account.last_close)
        self.cash.append(account.cash)
        self.positions.append(account.position)
        self.equity.append(account.equity)

    def append(self, point: EquityPoint) -> None:
        self.times.append(point.time)
        self.closes.append(point.close)
        self.cash.append(point.cash)
        self.positions.append(point.position)
        self.equity.append(point.equity)

    def extend(self, other: EquityCurve) -> None:
        """Append every point of ``other`` (a later stretch of the same run)."""
        self.times.extend(other.times)
        self.closes.extend(other.closes)
        self.cash.extend(other.cash)
        self.positions.extend(other.positions)
        self.equity.extend(other.equity)

    def __len__(self) -> int:
        return len(self.times)

    @overload
    def __getitem__(self, index: int) -> EquityPoint: ...
    @overload
    def __getitem__(self, index: slice) -> list[EquityPoint]: ...
    def __getitem__(self, index: int | slice) -> EquityPoint | list[EquityPoint]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return EquityPoint(
            self.times[index], self.closes[index], self.cash[index], self.positions[index], self.equity[index]
        )

    def __iter__(self) -> Iterator[EquityPoint]:
        return map(EquityPoint, self.times, self.closes, self.cash, self.positions, self.equity)
