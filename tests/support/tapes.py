"""Readers of the test data's tapes and exchange klines (tests/data/tapes, cited in tests/data/SOURCES.md).

They read with ``csv`` only, never with ``connectors.tape``, so that what they return can serve as an
oracle for the code under test: the raw rows, the tape's trades as ``Trade``, its rows as typed
``TapeRow`` (which write back as tape lines), and the exchange's klines as ``Candle`` or keyed by close.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import NamedTuple

from market.types import Candle, Trade, utc_from_ms

MINUTE_MS = 60_000


def tape_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a tape or kline file as read, every field a string."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@cache
def tape_trades(path: Path, exchange: str = "okx") -> tuple[Trade, ...]:
    """The trades of a tape (OKX archive columns), in file order."""
    return tuple(
        Trade(
            exchange=exchange,
            symbol=row["instrument_name"],
            trade_id=int(row["trade_id"]),
            price=Decimal(row["price"]),
            size=Decimal(row["size"]),
            side="buy" if row["side"] == "buy" else "sell",
            ts_event=utc_from_ms(int(row["created_time"])),
        )
        for row in tape_rows(path)
    )


class TapeRow(NamedTuple):
    """One tape row with its fields as written (prices and sizes keep their exact text)."""

    symbol: str
    trade_id: int
    side: str
    price: str
    size: str
    ms: int

    @property
    def line(self) -> str:
        """The row as a tape line (no newline)."""
        return f"{self.symbol},{self.trade_id},{self.side},{self.price},{self.size},{self.ms}"

    @property
    def close_ms(self) -> int:
        """The close (epoch ms) of the 1m candle the row's trade belongs to."""
        return (self.ms // MINUTE_MS + 1) * MINUTE_MS


def tape_records(path: Path) -> list[TapeRow]:
    """The rows of a tape as :class:`TapeRow`, in file order."""
    return [
        TapeRow(
            r["instrument_name"], int(r["trade_id"]), r["side"], r["price"], r["size"], int(r["created_time"])
        )
        for r in tape_rows(path)
    ]


def exchange_candles(path: Path) -> dict[datetime, tuple[Decimal, ...]]:
    """The exchange's own klines keyed by close time (= open time + interval): open, high, low, close,
    volume."""
    rows = tape_rows(path)
    interval = timedelta(milliseconds=int(rows[1]["open_time"]) - int(rows[0]["open_time"]))
    fields = ("open", "high", "low", "close", "volume")
    return {utc_from_ms(int(r["open_time"])) + interval: tuple(Decimal(r[k]) for k in fields) for r in rows}


def kline_candles(path: Path, symbol: str, timeframe: str, scale: int = 0) -> tuple[Candle, ...]:
    """The exchange's own klines as ``Candle`` (prices scaled by ``10**scale``; flat bars included, with
    trade_count 0 when their volume is 0 and 1 otherwise, as the klines carry no count)."""
    candles = []
    for row in tape_rows(path):
        volume = Decimal(row["volume"])
        o, h, lo, c = (Decimal(row[k]).scaleb(scale) for k in ("open", "high", "low", "close"))
        candles.append(
            Candle(
                exchange="okx",
                symbol=symbol,
                timeframe=timeframe,
                open_time=utc_from_ms(int(row["open_time"])),
                close_time=utc_from_ms(int(row["close_time"])),
                open=o,
                high=h,
                low=lo,
                close=c,
                volume=volume,
                quote_volume=Decimal(0),
                trade_count=0 if volume == 0 else 1,
                vwap=None,
                first_trade_id=None,
                last_trade_id=None,
            )
        )
    return tuple(candles)
