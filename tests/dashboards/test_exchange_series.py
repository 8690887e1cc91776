"""The dashboard names a series ``exchange:SYMBOL`` (OKX's by its symbol alone, as ``INSTRUMENTS``
does): the instrument list holds the same symbol of two exchanges as two series, each read from its own
exchange's rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from bytewax.testing import TestingSource, run_main

from configs.settings import Settings
from connectors.database import DatabaseSink
from dashboards.app import instruments
from dashboards.data import DashboardData, series_name, split_series
from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow
from market.types import Trade
from sql.migrate import migrate

T0 = datetime(2024, 8, 9, 0, 0, tzinfo=UTC)


def trades(exchange: str, price: int) -> list[Trade]:
    return [
        Trade(exchange, "BTC-USDT", i, Decimal(price + i), Decimal(1), "buy", T0 + timedelta(seconds=20 * i))
        for i in range(1, 10)
    ]


@pytest.fixture
def data(pg_url: str, tmp_path: Path) -> Iterator[DashboardData]:
    migrate(pg_url)
    source = TestingSource(trades("okx", 100) + trades("binance", 200))
    run_main(
        build_flow("t", source, CandleConfig(), FlowSinks(database=DatabaseSink(pg_url, tmp_path / "spool")))
    )
    shared = DashboardData.connect(pg_url, None)
    yield shared
    shared.close()


def test_series_names() -> None:
    assert split_series("BTC-USDT") == ("okx", "BTC-USDT")
    assert split_series("binance:BTC-USDT") == ("binance", "BTC-USDT")
    assert split_series("okx:BTC-USDT") == ("okx", "BTC-USDT")
    assert (
        series_name("okx", "BTC-USDT") == "BTC-USDT"
        and series_name("binance", "XRP-ETH") == "binance:XRP-ETH"
    )


def test_the_same_symbol_of_two_exchanges_is_two_series(data: DashboardData) -> None:
    assert data.db.symbols() == ["BTC-USDT", "binance:BTC-USDT"]
    settings = Settings(instruments=["binance:ETH-USDT", "okx:BTC-USDT"])
    assert instruments(settings, data) == ["binance:ETH-USDT", "BTC-USDT", "binance:BTC-USDT"]
    closes = {row["symbol"]: row["close"] for row in data.db.latest_closes(["BTC-USDT", "binance:BTC-USDT"])}
    assert closes == {"BTC-USDT": Decimal(108), "binance:BTC-USDT": Decimal(208)}
    okx, binance = data.db.candles("BTC-USDT", "1m", 10), data.db.candles("binance:BTC-USDT", "1m", 10)
    assert list(okx["open"]) == [101, 103, 106] and list(binance["open"]) == [201, 203, 206]
