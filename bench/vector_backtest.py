"""A vectorised numpy/pandas formulation of one strategy and the account: the speed anchor of the backtest.

``ema_crossover`` (fast 9, slow 21 by default) with the long-only account of ``market.backtest`` (fee 10
bps, no slippage, fraction 1), over whole arrays of 1m candles instead of one candle at a time:

- EMA as ``market.indicators`` (TA-Lib) seeds it: the mean of the first ``period`` closes (summed in
  order, as the streaming core does) at index ``period - 1``, then ``prev + k * (x - prev)``, here by
  pandas' ``ewm(alpha=k, adjust=False)`` (the same recursion written ``(1 - k) * prev + k * x``, so values
  may differ from the streaming ones in the last bits; the benchmark checks the signals are the same);
- a cross above at candle i: ``fast[i-1] <= slow[i-1]`` and ``fast[i] > slow[i]`` (below: ``>=`` then
  ``<``), from the candle after the first with both EMAs; a cross that repeats the current stance does not
  signal, so the kept signals alternate;
- a signal at candle i fills at the open of candle i + 1 (none on the last candle); long-only: a sell
  while flat does nothing, so trades are the (buy, sell) pairs after any leading sell;
- each trade's cash follows the account's formulas (one Python step per trade, not per candle); cash and
  position per candle are step functions of the fills, equity = cash + position * close.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

FEE = 0.001


def ema(close: np.ndarray, period: int) -> np.ndarray:
    """TA-Lib's EMA of ``close``: NaN before index ``period - 1``, the SMA seed there, then the recursion."""
    out = np.full(len(close), np.nan)
    if len(close) < period:
        return out
    seed = np.cumsum(close[:period])[-1] / period
    tail = np.concatenate(([seed], close[period:]))
    out[period - 1 :] = pd.Series(tail).ewm(alpha=2.0 / (period + 1), adjust=False).mean().to_numpy()
    return out


def crossover_signals(close: np.ndarray, fast: int = 9, slow: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """The candles (indices) at which ``ema_crossover`` signals, and the actions (+1 buy, -1 sell)."""
    f, s = ema(close, fast), ema(close, slow)
    first = max(fast, slow)  # a cross needs the previous candle's values: from index slow on
    prev_f, prev_s, now_f, now_s = f[first - 1 : -1], s[first - 1 : -1], f[first:], s[first:]
    raw = np.where((prev_f <= prev_s) & (now_f > now_s), 1, 0) - np.where(
        (prev_f >= prev_s) & (now_f < now_s), 1, 0
    )
    where = np.flatnonzero(raw) + first
    actions = raw[where - first]
    keep = np.ones(len(actions), dtype=bool)
    keep[1:] = actions[1:] != actions[:-1]
    return where[keep], actions[keep]


@dataclass(frozen=True)
class VectorRun:
    """The vectorised backtest's results, trades in the JSON output's shape (times as epoch seconds)."""

    trades: list[dict[str, Any]]
    equity: np.ndarray
    signals: int

    @property
    def final_equity(self) -> float:
        return float(self.equity[-1])


def backtest(
    open_time: np.ndarray,
    open_: np.ndarray,
    close: np.ndarray,
    fast: int = 9,
    slow: int = 21,
    cash: float = 10_000.0,
    fee: float = FEE,
) -> VectorRun:
    """``ema_crossover`` and the long-only account over candles given by their open times, opens and
    closes (consecutive candles: a signal at candle i fills at the open of candle i + 1)."""
    where, actions = crossover_signals(close, fast, slow)
    due = where + 1 < len(close)
    fills, sides = where[due] + 1, actions[due]
    if len(sides) and sides[0] < 0:  # long-only: a sell while flat does nothing
        fills, sides = fills[1:], sides[1:]
    trades: list[dict[str, Any]] = []
    cash_steps, held_steps = [cash], [0.0]  # cash and position from each fill on (the start before any)
    for n in range(0, len(fills), 2):
        entry = int(fills[n])
        price = float(open_[entry])
        quantity = cash / (price * (1 + fee))
        notional = quantity * price
        entry_fee = notional * fee
        cash -= notional * (1 + fee)
        cash_steps.append(cash)
        held_steps.append(quantity)
        trade: dict[str, Any] = {
            "side": "long",
            "entry_time": float(open_time[entry]),
            "entry_price": price,
            "quantity": quantity,
        }
        if n + 1 < len(fills):
            exit_ = int(fills[n + 1])
            exit_price = float(open_[exit_])
            proceeds = quantity * exit_price
            exit_fee = proceeds * fee
            cash += proceeds * (1 - fee)
            cash_steps.append(cash)
            held_steps.append(0.0)
            pnl, fees = (proceeds - exit_fee) - (notional + entry_fee), entry_fee + exit_fee
            trade |= {"exit_time": float(open_time[exit_]), "exit_price": exit_price, "open": False}
        else:  # still held: marked at the last close without an exit fee
            pnl, fees = quantity * float(close[-1]) - (notional + entry_fee), entry_fee
            trade |= {"exit_time": None, "exit_price": None, "open": True}
        trades.append(trade | {"pnl": pnl, "fees": fees})
    # the fills in force at each candle's close: those at or before its index
    step = np.searchsorted(fills[: len(cash_steps) - 1], np.arange(len(close)), side="right")
    equity = np.asarray(cash_steps)[step] + np.asarray(held_steps)[step] * close
    return VectorRun(trades, equity, len(where))
