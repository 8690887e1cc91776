"""Backtest accounting and performance metrics: a simulated spot account driven by strategy signals.

>>> account = Account(AccountSettings(cash=10_000, fee=0.001))
>>> account.on_signal(signal)               # doctest: +SKIP  (stamped T: fills at the candle opening at T)
>>> step = account.on_candle(candle)        # doctest: +SKIP  (fills at the open, equity at the close)
>>> compute_metrics(points, trades, account.settings, "1m", first_open)  # doctest: +SKIP
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
from market.backtest.metrics import METRICS, compute_metrics, format_metric

__all__ = [
    "METRICS",
    "Account",
    "AccountEvents",
    "AccountSettings",
    "AccountStep",
    "BacktestTrade",
    "EquityCurve",
    "EquityPoint",
    "Fill",
    "compute_metrics",
    "format_metric",
]
