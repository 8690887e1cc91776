"""The same instrument on two exchanges is two series: the candle step is keyed ``exchange|symbol``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow, series_key
from market.types import Candle, Trade

T0 = datetime(2024, 8, 9, 0, 0, tzinfo=UTC)


def _trades(exchange: str, price: int, ids: range) -> list[Trade]:
    return [
        Trade(exchange, "BTC-USDT", i, Decimal(price + n), Decimal(1), "buy", T0 + timedelta(seconds=20 * n))
        for n, i in enumerate(ids)
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_one_symbol_on_two_exchanges_gives_two_series(workers: int) -> None:
    okx = _trades("okx", 100, range(1, 10))  # 3 minutes of trades, ids 1..9 (the third stays open)
    binance = _trades("binance", 200, range(1, 10))  # the same ids and times on the other exchange
    items = [t for pair in zip(okx, binance, strict=True) for t in pair]
    candles: list[Candle] = []
    flow = build_flow("t", TestingSource(items), CandleConfig(), FlowSinks(candles=[TestingSink(candles)]))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    one_minute = sorted(
        (c.exchange, c.close_time, c.open, c.close, c.trade_count) for c in candles if c.timeframe == "1m"
    )
    minute = timedelta(minutes=1)
    assert one_minute == [
        ("binance", T0 + minute, 200, 202, 3),
        ("binance", T0 + 2 * minute, 203, 205, 3),
        ("okx", T0 + minute, 100, 102, 3),
        ("okx", T0 + 2 * minute, 103, 105, 3),
    ]


def test_per_instrument_entries_are_found_by_exchange_and_symbol() -> None:
    """An entry keyed ``binance|BTC-USDT`` is Binance's; one keyed by symbol alone is the config's
    exchange's (OKX) only."""
    config = CandleConfig(exchange="okx")
    entries = {"BTC-USDT": "okx's", "binance|BTC-USDT": "binance's", "okx|ETH-USDT": "okx eth"}
    assert config.of(entries, "okx", "BTC-USDT") == "okx's"
    assert config.of(entries, "binance", "BTC-USDT") == "binance's"
    assert config.of(entries, "okx", "ETH-USDT") == "okx eth"
    assert config.of(entries, "binance", "ETH-USDT") is None
    assert config.of({"XRP-ETH": 1}, "binance", "XRP-ETH") is None


def test_okx_keeps_the_key_it_had_and_other_exchanges_are_prefixed() -> None:
    """OKX's key is its symbol (recovery snapshots and cluster placement stay as they were)."""
    assert series_key("okx", "BTC-USDT") == "BTC-USDT"
    assert series_key("binance", "BTC-USDT") == "binance|BTC-USDT"
