"""A paper-trading bot: one strategy on one series with the backtest's account (docs/control.md).

``BotRunner.on_candle`` does what the backtest's step does for each final candle, in the same order
(flows/backtest.py): the signal due at this candle's open fills there, equity is marked at the close,
then the strategy sees the candle and its new signal (if any) is held to fill at the next candle's open.
So a runner fed the candles of a period takes the fills a backtest over the same candles takes.

States: running trades; paused keeps the strategy updating and equity marked but holds no signal (a
held one is dropped): no fills; stopped processes nothing more, after closing an open position at the
next candle's open when ``close_on_stop`` is set (a ``flat``), or at once, keeping the position as
last marked. Pure and picklable: the flow stores a runner after each batch and continues from it after
a restart.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from market.backtest import Account, AccountSettings, BacktestTrade, EquityPoint, Fill
from market.strategies.base import Strategy
from market.types import Action, Candle

RunState = Literal["running", "paused", "stopped"]


@dataclass(frozen=True, slots=True)
class BotStep:
    """One candle's effect on a bot: fills at its open, trades they closed, equity at its close, the
    position held after it (marked at the close) and the bot's state then."""

    fills: tuple[Fill, ...]
    closed: tuple[BacktestTrade, ...]
    equity: EquityPoint
    position: BacktestTrade | None
    state: RunState


@dataclass(frozen=True, slots=True)
class BotUpdate:
    """A bot's account at a candle's close, as published live (Redis ``tcp:bots:<bot>``)."""

    bot: str
    time: datetime
    equity: float
    cash: float
    position: float
    close: float
    state: RunState


@dataclass(frozen=True, slots=True)
class BotProgress:
    """What one bot did over a batch of candles, to store in one transaction: its new fills and equity
    points, and the runner as it stood after ``last_close`` (a pickle)."""

    bot_id: int
    bot: str
    fills: tuple[Fill, ...]
    equity: tuple[EquityPoint, ...]
    last_close: datetime
    runner: bytes


class BotRunner:
    """A bot's strategy and account; ``on_candle`` per final candle of its series, in time order."""

    def __init__(
        self,
        strategy: Strategy,
        settings: AccountSettings,
        close_on_stop: bool = False,
        state: RunState = "running",
    ) -> None:
        self.strategy = strategy
        self.account = Account(settings)
        self.close_on_stop = close_on_stop
        self.state: RunState = "running"
        self.last_close: datetime | None = None
        """Close of the last candle processed: older and equal candles are skipped."""
        self.done = False
        """Stopped and settled: no candle changes anything any more."""
        self._closing = False
        self._held: tuple[datetime, Action] | None = None
        self.set_state(state)

    def set_state(self, state: RunState) -> None:
        """Apply a state change (idempotent: setting the current state again changes nothing)."""
        if self.state == "stopped" or state == self.state:
            return
        self.state = state
        if state == "paused":
            self._held = None
        elif state == "stopped":
            self._held = None
            if self.close_on_stop and self.account.position != 0 and self.last_close is not None:
                self._held = (self.last_close, "flat")
                self._closing = True
            else:
                self.done = True

    def on_candle(self, candle: Candle) -> BotStep | None:
        """Process the next final candle of the series; None when it is skipped (already processed,
        or the bot is done)."""
        if self.done or (self.last_close is not None and candle.close_time <= self.last_close):
            return None
        account = self.account
        if self._held is not None:
            account.on_action(*self._held)
            self._held = None
        events = account.on_bar(candle.open_time, candle.close_time, float(candle.open), float(candle.close))
        if self._closing:
            self.done = True
        else:
            signal = self.strategy.update(candle)
            if signal is not None and self.state == "running":
                self._held = (signal.time, signal.action)
        self.last_close = candle.close_time
        return BotStep(events.fills, events.closed, account.equity_point(), account.open_trade(), self.state)

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(data: bytes) -> BotRunner:
        """A runner stored by ``dumps`` (written and read by the flow only)."""
        runner = pickle.loads(data)  # trusted: the flow's own bot_state rows
        if not isinstance(runner, BotRunner):
            raise TypeError(f"not a stored bot runner: {type(runner).__name__}")
        return runner
