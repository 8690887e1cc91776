"""Sample items of the live fan-out (final and provisional candles, collector health) for the tests of
the wire format, the publisher and the pure rules, and a wait on a condition instead of a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from market.health import CollectorHealth
from market.provisional import ProvisionalCandle
from market.types import Candle

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def candle(i: int, timeframe: str = "1m", symbol: str = "BTC-USDT", price: str = "61234.5") -> Candle:
    length = {"1m": 1, "5m": 5}[timeframe]
    open_time = T0 + timedelta(minutes=length * i)
    p = Decimal(price)
    return Candle(
        exchange="okx",
        symbol=symbol,
        timeframe=timeframe,
        open_time=open_time,
        close_time=open_time + timedelta(minutes=length),
        open=p,
        high=p + 1,
        low=p - 1,
        close=p,
        volume=Decimal("0.00012345678901234567890"),
        quote_volume=Decimal("7.55955431372839"),
        trade_count=3,
        vwap=p,
        first_trade_id=100 + i,
        last_trade_id=102 + i,
    )


def provisional(minute: int, second: float, close: str = "1.5") -> ProvisionalCandle:
    open_time = T0 + timedelta(minutes=minute)
    p = Decimal(close)
    return ProvisionalCandle(
        exchange="okx",
        symbol="BTC-USDT",
        timeframe="1m",
        open_time=open_time,
        close_time=open_time + timedelta(minutes=1),
        open=p,
        high=p,
        low=p,
        close=p,
        volume=Decimal(1),
        quote_volume=p,
        trade_count=1,
        vwap=p,
        as_of=open_time + timedelta(seconds=second),
    )


def health(**changes: object) -> CollectorHealth:
    base: dict[str, object] = dict(
        collector="okx",
        time=T0,
        status="running",
        should_be_running=True,
        messages_received=1000,
        messages_processed=1000,
        errors=0,
        uptime_seconds=600.0,
        last_message_time=T0 - timedelta(seconds=1),
    )
    return CollectorHealth(**{**base, **changes})  # type: ignore[arg-type]


def until(check: Callable[[], bool], timeout: float = 5.0, what: str = "the condition") -> None:
    """Return once ``check()`` holds (polled every 10 ms); fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        time.sleep(0.01)
