"""The series the dashboard tests show: an indicator config, candle payloads as the fan-out publishes
them, candles as the flow stores them, and a polling wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from configs.indicators import parse_indicator_config
from market.types import Candle

MINUTE = timedelta(minutes=1)
T0 = datetime(2024, 8, 9, 0, 5, tzinfo=UTC)
CONFIG = parse_indicator_config(
    {
        "profiles": [
            {
                "instruments": "*",
                "timeframes": ["1m", "5m"],
                "indicators": [
                    {"indicator": "EMA", "label": "ema_fast", "params": {"timeperiod": 3}},
                    {"indicator": "BBANDS", "params": {"timeperiod": 5}},
                    {"indicator": "RSI", "params": {"timeperiod": 3}},
                    {"indicator": "ATR", "params": {"timeperiod": 3}},
                ],
                "strategies": [{"strategy": "ema_crossover", "params": {"fast": 2, "slow": 4}}],
            },
            {"instruments": ["BTC-USDT"], "timeframes": ["1m"], "indicators": [{"indicator": "MACD"}]},
        ]
    }
)


def payload(close_time: datetime, close: str, kind: str = "candle", **extra: Any) -> dict[str, Any]:
    price = Decimal(close)
    return {
        "kind": kind,
        "exchange": "okx",
        "symbol": "BTC-USDT",
        "timeframe": "1m",
        "time": close_time,
        "open_time": close_time - MINUTE,
        "open": price,
        "high": price,
        "low": price,
        "close": price,
        "volume": Decimal("0.5"),
        "quote_volume": price / 2,
        "trade_count": 3,
        "vwap": price,
        **extra,
    }


def candle(close_time: datetime, close: str) -> Candle:
    p = Decimal(close)
    return Candle(
        "okx",
        "BTC-USDT",
        "1m",
        close_time - MINUTE,
        close_time,
        p,
        p + 1,
        p - 1,
        p,
        Decimal("0.5"),
        p / 2,
        3,
        p,
        1,
        3,
    )


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
