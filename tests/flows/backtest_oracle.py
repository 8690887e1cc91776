"""An independent formulation of the long-only account of docs/backtest.md, for the backtest tests:
a plain loop over (open_time, close_time, open, close) candles and (time, action) signals, written from
the issue's formulas, sharing no code with ``market.backtest``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class OracleRun:
    equity: list[tuple[datetime, float, float, float, float]] = field(default_factory=list)
    """(close time, close, cash, position, equity) at each candle."""
    trades: list[dict[str, object]] = field(default_factory=list)
    """Closed trades, then the open one (pnl marked at the last close, no exit fee)."""


def replay_account(
    candles: Sequence[tuple[datetime, datetime, float, float]],
    signals: Sequence[tuple[datetime, str]],
    cash: float = 10_000.0,
    fee: float = 0.001,
    slippage: float = 0.0,
    fraction: float = 1.0,
) -> OracleRun:
    """Long only: at each candle, the newest signal stamped at or before its open (and after the last
    candle's) acts at its open: buy opens when flat, sell or flat closes when long."""
    run = OracleRun()
    queue = sorted(signals, key=lambda s: s[0])
    i = 0
    qty = 0.0
    entry: dict[str, object] | None = None
    for open_time, close_time, open_, close in candles:
        action = None
        while i < len(queue) and queue[i][0] <= open_time:
            action = queue[i][1]
            i += 1
        if action == "buy" and entry is None:
            price = open_ * (1 + slippage)
            qty = fraction * cash / (price * (1 + fee))
            cost, entry_fee = qty * price, qty * price * fee
            cash -= cost + entry_fee
            entry = {"entry_time": open_time, "entry_price": price, "cost": cost, "fee": entry_fee}
        elif action in ("sell", "flat") and entry is not None:
            price = open_ * (1 - slippage)
            proceeds = qty * price
            exit_fee = proceeds * fee
            cash += proceeds - exit_fee
            run.trades.append(
                {
                    "entry_time": entry["entry_time"],
                    "entry_price": entry["entry_price"],
                    "exit_time": open_time,
                    "exit_price": price,
                    "quantity": qty,
                    "pnl": proceeds - exit_fee - entry["cost"] - entry["fee"],  # type: ignore[operator]
                    "fees": entry["fee"] + exit_fee,  # type: ignore[operator]
                    "open": False,
                }
            )
            entry, qty = None, 0.0
        run.equity.append((close_time, close, cash, qty, cash + qty * close))
    if entry is not None:
        last_close = candles[-1][3]
        run.trades.append(
            {
                "entry_time": entry["entry_time"],
                "entry_price": entry["entry_price"],
                "exit_time": None,
                "exit_price": None,
                "quantity": qty,
                "pnl": qty * last_close - entry["cost"] - entry["fee"],  # type: ignore[operator]
                "fees": entry["fee"],
                "open": True,
            }
        )
    return run


EXACT = ("entry_time", "exit_time", "open")
NUMBERS = ("entry_price", "exit_price", "quantity", "pnl", "fees")


def exact_parts(trades: Sequence[dict[str, object]]) -> list[tuple[object, ...]]:
    """The fields of trade dicts that must match exactly (times, open)."""
    return [tuple(t[k] for k in EXACT) for t in trades]


def number_parts(trades: Sequence[dict[str, object]]) -> list[float]:
    """The numeric fields of trade dicts, flattened (an open trade's missing exit as 0)."""
    return [float(t[k] or 0.0) for t in trades for k in NUMBERS]  # type: ignore[arg-type]
