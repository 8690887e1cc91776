"""Rows for the database sink tests (the XRP-ETH tape's trades, 1m candles) and reads of what it stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from connectors.tape import read_tape
from market.types import Candle, Trade
from sql.policies import refresh_rollups
from tests.conftest import TEST_DATA

XRP_TAPE = TEST_DATA / "tapes" / "XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv"
T0 = datetime(2019, 10, 11, tzinfo=UTC)


def tape_trades(n: int) -> list[Trade]:
    trades = []
    for trade in read_tape(XRP_TAPE):
        trades.append(trade)
        if len(trades) == n:
            break
    return trades


def candle(close: datetime, price: str = "1.5", flat: bool = False, complete: bool = True) -> Candle:
    p = Decimal(price)
    return Candle(
        exchange="okx",
        symbol="XRP-ETH",
        timeframe="1m",
        open_time=close - timedelta(minutes=1),
        close_time=close,
        open=p,
        high=p,
        low=p,
        close=p,
        volume=Decimal(0) if flat else Decimal("2"),
        quote_volume=Decimal(0) if flat else 2 * p,
        trade_count=0 if flat else 1,
        vwap=None if flat else p,
        first_trade_id=None if flat else 7,
        last_trade_id=None if flat else 7,
        complete=complete,
    )


def minutes(n: int) -> list[Candle]:
    """1m candles closing 00:01 ... 00:n, priced 1.6, 1.7, ... (the minute closing 00:07 incomplete)."""
    return [
        candle(T0 + timedelta(minutes=i), f"{Decimal('1.5') + Decimal(i) / 10}", complete=i != 7)
        for i in range(1, n + 1)
    ]


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]  # constant test queries


def rollups(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT engine FROM schema_migrations LIMIT 1").fetchone() == ("timescale",):
            refresh_rollups(conn)  # plain PostgreSQL keeps them in the writing transaction
        columns = "time, open, high, low, close, volume, trade_count, complete"
        return {
            tf: conn.execute(f"SELECT {columns} FROM candles_{tf} ORDER BY time").fetchall()
            for tf in ("5m", "15m")
        }
