"""The candle step's live output, driven directly (no dataflow): the provisional candle is throttled but
a candle's last provisional state is never lost, and it comes before that candle's final candle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from flows.candles import CandleConfig, CandleLogic, CandleOut
from market.provisional import ProvisionalCandle
from market.types import Candle, Trade, TradeBatch

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
LIVE = CandleConfig(clock="wall", provisional_every=timedelta(hours=1))
"""A slot far longer than the test: every provisional update after the first is held."""


def trade(trade_id: int, seconds: float, price: str) -> Trade:
    return Trade(
        "okx", "BTC-USDT", trade_id, Decimal(price), Decimal("0.1"), "buy", T0 + timedelta(seconds=seconds)
    )


def kinds(out: list[CandleOut]) -> list[str]:
    return [type(item).__name__ for item in out]


def batch(logic: CandleLogic, *trades: Trade) -> list[CandleOut]:
    out, _ = logic.on_batch(list(trades))
    return [item for item in out if not isinstance(item, TradeBatch)]


def test_last_provisional_state_is_published_before_its_final_candle() -> None:
    logic = CandleLogic(LIVE, None)
    first = batch(logic, trade(1, 10, "100"))
    assert kinds(first) == ["ProvisionalCandle"]  # the first update of a series goes at once
    assert batch(logic, trade(2, 20, "105")) == []  # too soon: held, not dropped
    closing = batch(logic, trade(3, 65, "110"))  # a minute later (beyond the grace): 12:00-12:01 closes
    assert kinds(closing)[:2] == ["ProvisionalCandle", "Candle"]
    last, final = closing[0], closing[1]
    assert isinstance(last, ProvisionalCandle) and isinstance(final, Candle)
    assert (last.close_time, last.close, last.trade_count) == (final.close_time, Decimal("105"), 2)
    assert (final.close, final.trade_count) == (Decimal("105"), 2)


def test_replay_emits_no_provisional_candle() -> None:
    logic = CandleLogic(CandleConfig(clock="event", provisional_every=timedelta(seconds=1)), None)
    out = batch(logic, trade(1, 10, "100"), trade(2, 65, "110"))
    assert kinds(out) == ["Candle"]
