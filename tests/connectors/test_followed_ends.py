"""Where each exchange's stored data end, read per exchange and keyed ``exchange|symbol``."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from bytewax.testing import TestingSource, run_main

from connectors.database import DatabaseSink
from connectors.resume import StoredEnds, load_followed_ends
from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow
from market.types import Trade, ms_from_utc
from sql.migrate import migrate

T0 = datetime(2024, 8, 9, 0, 0, 5, tzinfo=UTC)


def test_last_trades_of_an_exchange_by_symbol() -> None:
    ends = StoredEnds(last_trades={"okx|BTC-USDT": (5, 1), "binance|BTC-USDT": (7, 2), "ETH-USDT": (9, 3)})
    assert ends.last_trades_of("okx") == {"BTC-USDT": (5, 1), "ETH-USDT": (9, 3)}
    assert ends.last_trades_of("binance") == {"BTC-USDT": (7, 2)}


def test_each_exchange_resumes_from_its_own_stored_end(pg_url: str, tmp_path: Path) -> None:
    migrate(pg_url)
    trades = [
        Trade("okx", "BTC-USDT", 10, Decimal(1), Decimal(1), "buy", T0),
        Trade("binance", "BTC-USDT", 20, Decimal(2), Decimal(1), "buy", T0),
        Trade("binance", "BTC-USDT", 21, Decimal(2), Decimal(1), "sell", T0.replace(second=9)),
    ]
    sinks = FlowSinks(database=DatabaseSink(pg_url, tmp_path / "spool"))
    run_main(build_flow("t", TestingSource(trades), CandleConfig(), sinks))
    ends = load_followed_ends(pg_url, {"okx": ("BTC-USDT", "ETH-USDT"), "binance": ("BTC-USDT",)})
    assert ends.last_trades == {
        "okx|BTC-USDT": (10, ms_from_utc(T0)),
        "binance|BTC-USDT": (21, ms_from_utc(T0.replace(second=9))),
    }
    assert ends.last_trades_of("binance") == {"BTC-USDT": (21, ms_from_utc(T0.replace(second=9)))}
    assert [t.trade_id for t in ends.points["binance|BTC-USDT"].open_trades] == [20, 21]
    assert [t.exchange for t in ends.points["okx|BTC-USDT"].open_trades] == ["okx"]
