"""The Binance path against Binance's own klines: the real XRP/ETH aggregate trades of the bundled tape
(tests/data/tapes, see tests/data/SOURCES.md), each sent as the documented ``xrpeth@aggTrade`` event of a
combined stream, parsed by the Binance parser and built into candles by ``market.windowing`` (no flow),
give exactly Binance's 1m and 5m klines for the same period, flat intervals included."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.binance.parser import FrameParser
from market.timeframes import TF_1M, TF_5M, Timeframe
from market.types import Candle, Trade, ms_from_utc
from market.windowing import SeriesWindows
from tests.support.tapes import tape_rows

TAPES = Path(__file__).parents[1] / "data" / "tapes"
XRP = TAPES / "XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv"
KLINES = {TF_1M: TAPES / "XRP-ETH-exchange-candles-1m.csv", TF_5M: TAPES / "XRP-ETH-exchange-candles-5m.csv"}
RECEIVED = datetime(2019, 10, 11, tzinfo=UTC)


def events() -> list[bytes]:
    """The tape's rows as Binance sends them: ``a`` the aggregate id, ``m`` true when the taker sold."""
    out = []
    for row in tape_rows(XRP):
        ms = int(row["created_time"])
        event = {
            "e": "aggTrade",
            "E": ms,
            "s": "XRPETH",
            "a": int(row["trade_id"]),
            "p": row["price"],
            "q": row["size"],
            "f": int(row["trade_id"]),
            "l": int(row["trade_id"]),
            "T": ms,
            "m": row["side"] == "sell",
            "M": True,
        }
        out.append(json.dumps({"stream": "xrpeth@aggTrade", "data": event}).encode())
    return out


def parsed(frames: list[bytes]) -> list[Trade]:
    parse = FrameParser(["XRP-ETH"])
    trades: list[Trade] = []
    for raw in frames:
        result = parse(raw, RECEIVED)
        assert isinstance(result, list), result
        trades.extend(result)
    return trades


def candles(trades: list[Trade]) -> tuple[Candle, ...]:
    windows = SeriesWindows("binance", "XRP-ETH", timedelta(seconds=2))
    out = windows.on_trades(trades)
    return out.candles + windows.finish(max(t.ts_event for t in trades)).candles


@pytest.fixture(scope="module")
def built() -> tuple[Candle, ...]:
    return candles(parsed(events()))


@pytest.mark.parametrize(("tf", "count"), [(TF_1M, 3559), (TF_5M, 711)])
def test_binance_path_candles_equal_binance_klines(
    built: tuple[Candle, ...], tf: Timeframe, count: int
) -> None:
    got = [c for c in built if c.timeframe == tf.name]
    klines = tape_rows(KLINES[tf])
    expected = [
        (int(k["close_time"]), *(Decimal(k[f]) for f in ("open", "high", "low", "close", "volume")))
        for k in klines
    ]
    rows = [(ms_from_utc(c.close_time), c.open, c.high, c.low, c.close, c.volume) for c in got]
    assert len(got) == count == len(expected) - 1  # the last kline was still forming (rule 9)
    assert rows == expected[:-1]
    assert all(c.exchange == "binance" and c.symbol == "XRP-ETH" for c in got)
    assert sum(c.is_flat for c in got) > 0


def test_the_parsed_trades_are_the_tapes_rows() -> None:
    trades = parsed(events())
    rows = tape_rows(XRP)
    assert len(trades) == len(rows) == 12_477
    assert [(t.trade_id, str(t.price), str(t.size), t.side, ms_from_utc(t.ts_event)) for t in trades] == [
        (int(r["trade_id"]), r["price"], r["size"], r["side"], int(r["created_time"])) for r in rows
    ]
