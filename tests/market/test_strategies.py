"""Strategy templates on hand-built series with known signals, plus no-look-ahead checks on real candles."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import talib

from market.strategies import STRATEGIES, build_strategy
from market.types import Candle, Signal
from tests.support.tapes import kline_candles

T0 = datetime(2024, 1, 1, tzinfo=UTC)
CANDLES_1M = Path(__file__).resolve().parents[1] / "data" / "tapes" / "XRP-ETH-exchange-candles-1m.csv"


@cache
def real_candles() -> tuple[Candle, ...]:
    """The exchange's own XRP-ETH 1m candles (flat bars included)."""
    return kline_candles(CANDLES_1M, "XRP-ETH", "1m")


def candle(i: int, close: float, high: float | None = None, low: float | None = None) -> Candle:
    c = Decimal(str(close))
    return Candle(
        exchange="okx",
        symbol="TEST-USDT",
        timeframe="1m",
        open_time=T0 + timedelta(minutes=i),
        close_time=T0 + timedelta(minutes=i + 1),
        open=c,
        high=Decimal(str(high)) if high is not None else c,
        low=Decimal(str(low)) if low is not None else c,
        close=c,
        volume=Decimal(1),
        quote_volume=c,
        trade_count=1,
        vwap=c,
        first_trade_id=i,
        last_trade_id=i,
    )


def series(closes: list[float]) -> list[Candle]:
    return [candle(i, c) for i, c in enumerate(closes)]


def run(name: str, candles: list[Candle], **params: Any) -> list[tuple[int, str]]:
    """(candle index, action) of every signal; asserts each is stamped with its candle's close."""
    strategy = build_strategy(name, **params)
    out = []
    for i, c in enumerate(candles):
        signal = strategy.update(c)
        if signal is not None:
            assert signal.time == c.close_time
            assert signal.symbol == c.symbol and signal.timeframe == c.timeframe
            out.append((i, signal.action))
    return out


def test_ema_crossover_by_hand() -> None:
    # EMA(2) and EMA(3) are equal on the flat start; the jump to 20 lifts EMA(2) (k=2/3) to 16.67 and
    # EMA(3) (k=1/2) to 15: a cross up. The drop to 0 at index 8 takes EMA(2) below EMA(3): a cross down.
    closes = [10.0] * 5 + [20.0] * 3 + [0.0] * 3
    assert run("ema_crossover", series(closes), fast=2, slow=3) == [(5, "buy"), (8, "sell")]


def test_ema_crossover_reason_and_values() -> None:
    strategy = build_strategy("ema_crossover", label="ema_fast_slow", fast=2, slow=3)
    signals = [s for c in series([10.0] * 5 + [20.0]) if (s := strategy.update(c)) is not None]
    assert len(signals) == 1
    s = signals[0]
    assert s.strategy == "ema_fast_slow" and s.action == "buy"
    assert s.reason == "EMA(2) crossed above EMA(3)"
    assert s.values["ema_fast"] == pytest.approx(10 + 10 * 2 / 3)
    assert s.values["ema_slow"] == pytest.approx(15.0)
    assert s.values["close"] == 20.0
    hash(s)  # signals are hashable


def test_rsi_reversion_by_hand() -> None:
    # RSI(2): rising closes give 100. The drop 6 -> 1 makes avg gain 0.5, avg loss 2.5: RSI 16.7 (buy).
    # The rise 1 -> 4 makes avg gain 1.75, avg loss 1.25: RSI 58.3, back above 50 (flat).
    # Then a run up to 100 and the jump 4 -> 9 -> 20 gives RSI above 70 (sell).
    closes = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0, 4.0, 3.0, 9.0]
    signals = run("rsi_reversion", series(closes), timeperiod=2)
    # index 8: gain 0.875, loss (1.25+1)/2=1.125 -> 43.75 (no cross of 30); index 9: gain (0.875+6)/2,
    # loss 0.5625 -> 85.9 > 70 -> sell.
    assert signals == [(6, "buy"), (7, "flat"), (9, "sell")]


def test_rsi_reversion_exit_short() -> None:
    # From short at RSI > 70, a fall that takes RSI to or below 50 closes it.
    closes = [5.0, 4.0, 3.0, 2.0, 1.0, 9.0, 6.0]
    # index 5: gain (0+8)/2=4, loss (1+0)/2=0.5 -> 88.9 (sell); index 6: gain 2, loss (0.5+3)/2=1.75 -> 53.3
    # (still above 50, no exit); append a further fall.
    closes.append(4.0)  # index 7: gain 1, loss (1.75+2)/2=1.875 -> 34.8 -> flat
    assert run("rsi_reversion", series(closes), timeperiod=2) == [(5, "sell"), (7, "flat")]


def test_macd_cross_by_hand_and_against_talib() -> None:
    closes = [10.0] * 40 + [11.0] * 10 + [9.0] * 10
    signals = run("macd_cross", series(closes))
    assert signals == [(40, "buy"), (50, "sell")]  # the first rising and first falling candles


def test_macd_cross_matches_talib_crossings_on_real_candles() -> None:
    candles = list(real_candles())
    close = np.array([float(c.close) for c in candles])
    macd, signal, _ = talib.MACD(close)
    expected = []
    position = 0
    for i in range(34, len(close)):
        if macd[i - 1] <= signal[i - 1] and macd[i] > signal[i] and position != 1:
            expected.append((i, "buy"))
            position = 1
        elif macd[i - 1] >= signal[i - 1] and macd[i] < signal[i] and position != -1:
            expected.append((i, "sell"))
            position = -1
    got = run("macd_cross", candles)
    assert len(got) > 20
    assert got == expected


def test_bollinger_breakout_by_hand() -> None:
    # 20 flat closes: bands collapse to 100. 101 breaks above the upper band (100.05 + 2*0.218 = 100.49): buy.
    # 100 is below the middle band (100.05): flat. 99 is below the lower band (100 - 2*0.316 = 99.37) after
    # a close of 100 that was above the previous lower band (99.61): sell.
    closes = [100.0] * 20 + [101.0, 100.0, 99.0]
    assert run("bollinger_breakout", series(closes)) == [(20, "buy"), (21, "flat"), (22, "sell")]


def test_donchian_breakout_by_hand() -> None:
    closes = [10.0, 10.0, 10.0, 11.0, 12.0, 9.0, 9.5, 8.0]
    # index 3: 11 > max(10,10,10) -> buy; 12: already long; index 5: 9 < min(10, 11, 12) -> sell;
    # index 7: 8 < min(12, 9, 9.5) but already short.
    assert run("donchian_breakout", series(closes), timeperiod=3) == [(3, "buy"), (5, "sell")]


def test_donchian_uses_highs_and_lows() -> None:
    candles = [
        candle(0, 10, 11, 9),
        candle(1, 10, 11, 9),
        candle(2, 10.5, 10.6, 10.4),
        candle(3, 11.5, 12, 11),
    ]
    # The channel of candles 0-1 is [9, 11]; the close 10.5 stays inside, 11.5 breaks above 11.
    assert run("donchian_breakout", candles, timeperiod=2) == [(3, "buy")]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_prefix_invariance_on_real_candles(name: str) -> None:
    """Signals up to a cut are the same whether the input stops at the cut or continues (TIME.md rule 8)."""
    candles = list(real_candles())
    params: dict[str, Any] = {"fast": 3, "slow": 8} if name == "ema_crossover" else {}
    full = _signals(name, candles, params)
    assert full, "the template should signal on two days of real candles"
    for cut in (100, 777, 1500, 2999):
        cut_time = candles[cut - 1].close_time
        prefix = _signals(name, candles[:cut], params)
        assert prefix == [s for s in full if s.time <= cut_time]


def _signals(name: str, candles: list[Candle], params: dict[str, Any]) -> list[Signal]:
    strategy = build_strategy(name, **params)
    return [s for c in candles if (s := strategy.update(c)) is not None]


def test_a_signal_never_depends_on_later_candles() -> None:
    """Changing every candle after a signal's candle leaves that signal unchanged."""
    candles = list(real_candles())
    base = _signals("bollinger_breakout", candles, {})
    for signal in base[:5]:
        i = next(i for i, c in enumerate(candles) if c.close_time == signal.time)
        altered = candles[: i + 1] + series([1.0] * 50)
        assert signal in _signals("bollinger_breakout", altered, {})


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_pickle_mid_series(name: str) -> None:
    candles = list(real_candles())[:2000]
    expected = _signals(name, candles, {})
    first = build_strategy(name)
    head = [s for c in candles[:1000] if (s := first.update(c)) is not None]
    resumed = pickle.loads(pickle.dumps(first))
    tail = [s for c in candles[1000:] if (s := resumed.update(c)) is not None]
    assert head + tail == expected


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("nope", {}, "unknown strategy 'nope'"),
        ("ema_crossover", {"fast": 21, "slow": 9}, "fast < slow"),
        ("ema_crossover", {"period": 3}, "unknown parameter 'period' for ema_crossover"),
        ("ema_crossover", {"fast": 1}, "'fast' must be >= 2"),
        ("rsi_reversion", {"oversold": 60}, "oversold < exit_level < overbought"),
        ("rsi_reversion", {"overbought": 120}, "'overbought' must be <= 100"),
        ("macd_cross", {"fastperiod": 30}, "fastperiod < slowperiod"),
        ("bollinger_breakout", {"nbdev": -1}, "'nbdev' must be >= 0"),
        ("donchian_breakout", {"timeperiod": 0}, "'timeperiod' must be >= 1"),
        ("donchian_breakout", {"timeperiod": 2.5}, "must be an integer"),
    ],
)
def test_build_strategy_errors(name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_strategy(name, **params)


def test_signal_rejects_bad_action_and_naive_time() -> None:
    with pytest.raises(ValueError, match="buy, sell, flat"):
        Signal("okx", "X", "1m", T0, "s", "hold", "r", {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="naive"):
        Signal("okx", "X", "1m", datetime(2024, 1, 1), "s", "buy", "r", {})
    s = Signal("okx", "X", "1m", T0, "s", "buy", "r", {"b": 1, "a": 2.5})
    assert list(s.values) == ["a", "b"] and s.values == {"a": 2.5, "b": 1.0}
    assert pickle.loads(pickle.dumps(s)) == s and hash(pickle.loads(pickle.dumps(s))) == hash(s)
    with pytest.raises(TypeError):
        s.values["a"] = 3.0  # type: ignore[index]
