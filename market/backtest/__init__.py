"""Backtest accounting and performance metrics: a simulated spot account driven by strategy signals.

>>> account = Account(AccountSettings(cash=10_000, fee=0.001))
>>> account.on_signal(signal)               # doctest: +SKIP  (stamped T: fills at the candle opening at T)
>>> step = account.on_candle(candle)        # doctest: +SKIP  (fills at the open, equity at the close)
"""

from market.backtest.account import (
    Account,
    AccountEvents,
    AccountSettings,
    AccountStep,
    BacktestTrade,
    EquityCurve,
    EquityPoint,
    Fill,
)

__all__ = [
    "Account",
    "AccountEvents",
    "AccountSettings",
    "AccountStep",
    "BacktestTrade",
    "EquityCurve",
    "EquityPoint",
    "Fill",
]
