"""Stored backtest runs for the Backtests page's tests: rows written with plain SQL, as the contract of
the tables says (independent of the backtest command's writer), and candles of the run's series."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

MINUTE = timedelta(minutes=1)
T0 = datetime(2026, 1, 31, 23, 50, tzinfo=UTC)
"""The first candle's open: the runs straddle a month end."""


@dataclass(frozen=True)
class StoredRun:
    run_id: int
    closes: list[float]
    equity: list[float]
    trades: list[dict[str, Any]]


def store_candles(
    conn: psycopg.Connection[Any], symbol: str, closes: list[float], start: datetime = T0
) -> None:
    """1m candles of ``okx symbol`` closing at ``start + 1m`` ..., each opening at the previous close."""
    opens = [closes[0], *closes[:-1]]
    with conn.cursor() as cursor:
        for i, (o, c) in enumerate(zip(opens, closes, strict=True)):
            cursor.execute(
                "INSERT INTO candles_1m (exchange, symbol, time, open, high, low, close, volume,"
                " quote_volume, trade_count, vwap, first_trade_id, last_trade_id)"
                " VALUES ('okx', %s, %s, %s, %s, %s, %s, 1, %s, 1, %s, %s, %s)",
                (symbol, start + (i + 1) * MINUTE, o, max(o, c), min(o, c), c, c, c, i, i),
            )


def store_run(
    conn: psycopg.Connection[Any],
    symbol: str,
    strategy: str,
    closes: list[float],
    *,
    start: datetime = T0,
    cash: float = 10_000.0,
) -> StoredRun:
    """A run that buys at the second candle's open and sells at the fifth's (fee 0), then buys again at
    the seventh's and holds: the equity, trades and metrics written as the tables hold them."""
    times = [start + (i + 1) * MINUTE for i in range(len(closes))]
    opens = [closes[0], *closes[:-1]]
    q1 = cash / opens[1]
    cash2 = q1 * opens[4]
    q2 = cash2 / opens[6]
    position = [0.0] + [q1] * 3 + [0.0] * 2 + [q2] * (len(closes) - 6)
    cash_after = [cash] + [0.0] * 3 + [cash2] * 2 + [0.0] * (len(closes) - 6)
    equity = [c + p * x for c, p, x in zip(cash_after, position, closes, strict=True)]
    trades = [
        {"entry_time": times[0], "side": "long", "entry_price": opens[1], "exit_time": times[3],
         "exit_price": opens[4], "quantity": q1, "pnl": cash2 - cash, "fees": 0.0, "is_open": False},
        {"entry_time": times[5], "side": "long", "entry_price": opens[6], "exit_time": None,
         "exit_price": None, "quantity": q2, "pnl": q2 * closes[-1] - cash2, "fees": 0.0, "is_open": True},
    ]  # fmt: skip
    peak = np.maximum.accumulate(equity)
    metrics = {
        "start": start.isoformat(),
        "end": times[-1].isoformat(),
        "start_equity": cash,
        "final_equity": equity[-1],
        "total_return": equity[-1] / cash - 1,
        "max_drawdown": float(np.min(np.array(equity) / peak - 1)),
        "sharpe": None,
        "trades": 1,
        "win_rate": 1.0 if cash2 > cash else 0.0,
    }
    row = conn.execute(
        "INSERT INTO backtest_runs (exchange, symbol, timeframe, strategy, source, data_start, data_end,"
        " candles, config, code_version, metrics) VALUES ('okx', %s, '1m', %s, 'candles', %s, %s, %s, %s,"
        " 'test', %s) RETURNING run_id",
        (symbol, strategy, start, times[-1], len(closes), Jsonb({"strategy": strategy}), Jsonb(metrics)),
    ).fetchone()
    assert row is not None
    run_id = int(row[0])
    with conn.cursor() as cursor:
        for t in trades:
            cursor.execute(
                "INSERT INTO backtest_trades (run_id, entry_time, side, entry_price, exit_time, exit_price,"
                " quantity, pnl, fees, is_open) VALUES (%(run_id)s, %(entry_time)s, %(side)s,"
                " %(entry_price)s, %(exit_time)s, %(exit_price)s, %(quantity)s, %(pnl)s, %(fees)s,"
                " %(is_open)s)",
                {**t, "run_id": run_id},
            )
        for t, c, k, p, e in zip(times, closes, cash_after, position, equity, strict=True):
            cursor.execute(
                "INSERT INTO backtest_equity (run_id, time, close, cash, position, equity)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (run_id, t, c, k, p, e),
            )
    return StoredRun(run_id, closes, equity, trades)
