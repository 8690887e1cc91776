"""The wire format of the live fan-out (pure): each kind's channel and payload, times in UTC with ``Z``,
decimals exact (docs/redis.md, "Payloads")."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from connectors.redis_codec import LiveItem, encode, payload_of
from market.health import CollectorHealth
from market.types import Candle, IndicatorValue, Signal, Trade
from market.windowing import LateTrade
from tests.conftest import REPO_ROOT
from tests.support.live_samples import T0, candle, provisional


def test_candle_payload_is_labelled_by_close_and_keeps_decimals_exact() -> None:
    kind, channel, payload = payload_of(candle(0))
    raw = orjson.loads(encode(payload))
    assert (kind, channel) == ("candle", "tcp:candles:okx:BTC-USDT:1m")
    assert raw["time"] == "2024-03-01T12:01:00Z" and raw["open_time"] == "2024-03-01T12:00:00Z"
    assert raw["volume"] == "0.00012345678901234567890" and raw["quote_volume"] == "7.55955431372839"
    assert raw["open"] == "61234.5" and raw["high"] == "61235.5" and raw["trade_count"] == 3
    assert raw["provisional"] is False and raw["kind"] == "candle"
    # A non-UTC aware time is published in UTC; exponent decimals are written plainly.
    shifted = Candle(
        **{
            **{f: getattr(candle(0), f) for f in Candle.__dataclass_fields__},
            "close_time": T0.astimezone(timezone(timedelta(hours=2))),
            "volume": Decimal("1E+2"),
        }
    )
    raw = orjson.loads(encode(payload_of(shifted)[2]))
    assert raw["time"] == "2024-03-01T12:00:00Z" and raw["volume"] == "100"


def test_every_kind_has_its_channel_and_shape() -> None:
    trade = Trade(
        exchange="okx",
        symbol="BTC-USDT",
        trade_id=9,
        price=Decimal("61000.1"),
        size=Decimal("0.002"),
        side="sell",
        ts_event=T0 + timedelta(seconds=59, milliseconds=500),
        ts_recv=T0 + timedelta(minutes=1, seconds=3),
    )
    late = LateTrade(
        trade=trade, candle_close=T0 + timedelta(minutes=1), watermark=T0 + timedelta(minutes=1, seconds=1)
    )
    value = IndicatorValue(
        exchange="okx",
        symbol="BTC-USDT",
        timeframe="5m",
        time=T0,
        indicator="ema_20",
        values={"ema": 61000.25},
    )
    signal = Signal(
        exchange="okx",
        symbol="BTC-USDT",
        timeframe="5m",
        time=T0,
        strategy="cross",
        action="buy",
        reason="ema crossed",
        values={"fast": 2.0, "slow": 1.0},
    )
    health = CollectorHealth(collector="okx", time=T0, status="running", should_be_running=True)
    items: list[LiveItem] = [provisional(0, 10), late, value, signal, health]
    got = {kind: (channel, orjson.loads(encode(p))) for kind, channel, p in map(payload_of, items)}
    assert got["provisional"][0] == "tcp:provisional:okx:BTC-USDT:1m"
    assert got["provisional"][1]["provisional"] is True
    assert got["provisional"][1]["time"] == "2024-03-01T12:01:00Z"
    assert got["provisional"][1]["as_of"] == "2024-03-01T12:00:10Z"
    assert got["late"][0] == "tcp:late:okx:BTC-USDT"
    assert got["late"][1]["time"] == "2024-03-01T12:00:59.500000Z"
    assert got["late"][1]["lateness_seconds"] == 1.5 and got["late"][1]["price"] == "61000.1"
    assert got["late"][1]["candle_close"] == "2024-03-01T12:01:00Z"
    assert got["indicator"] == (
        "tcp:indicators:okx:BTC-USDT:5m",
        {
            "kind": "indicator",
            "exchange": "okx",
            "symbol": "BTC-USDT",
            "timeframe": "5m",
            "time": "2024-03-01T12:00:00Z",
            "indicator": "ema_20",
            "values": {"ema": 61000.25},
        },
    )
    assert got["signal"][0] == "tcp:signals:okx:BTC-USDT:5m"
    assert got["signal"][1]["action"] == "buy" and got["signal"][1]["values"] == {"fast": 2.0, "slow": 1.0}
    assert got["health"][0] == "tcp:health" and got["health"][1]["last_message_time"] is None
    with pytest.raises(TypeError):
        payload_of(trade)  # type: ignore[arg-type]


def test_the_reader_loads_neither_bytewax_nor_the_publisher() -> None:
    """A live client (the dashboard) reads Redis without loading the dataflow engine."""
    code = (
        "import sys, connectors.redis_reader; "
        "print(sorted(m for m in ('bytewax', 'connectors.redis_fanout') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
