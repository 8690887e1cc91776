"""The vectorised formulation of the benchmark gives the streaming strategy's signals and the account's
trades and equity on the same candles, so the benchmark compares the same computation."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from bench.vector_backtest import backtest, crossover_signals, ema
from market.backtest import Account, AccountSettings, BacktestTrade
from market.indicators import build_indicator
from market.strategies import build_strategy
from market.types import Candle
from tests.support.tapes import kline_candles

TAPE = Path(__file__).resolve().parents[1] / "data" / "tapes" / "XRP-ETH-exchange-candles-1m.csv"


def real() -> tuple[Candle, ...]:
    return kline_candles(TAPE, "XRP-ETH", "1m")


def walk(n: int, seed: int) -> tuple[Candle, ...]:
    """A random walk rounded to 4 decimals, opens at the previous close, flat stretches included."""
    rng = np.random.default_rng(seed)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.001, n) * (rng.random(n) > 0.1))), 4)
    base = real()[0]
    out = []
    for i in range(n):
        c, o = Decimal(str(close[i])), Decimal(str(close[i - 1] if i else 100.0))
        out.append(
            Candle(
                "okx", "SYN-USDT", "1m",
                base.open_time + i * (base.close_time - base.open_time),
                base.close_time + i * (base.close_time - base.open_time),
                o, max(o, c), min(o, c), c, Decimal(1), Decimal(0), 1, None, None, None,
            )
        )  # fmt: skip
    return tuple(out)


def arrays(candles: Sequence[Candle]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.array([c.open_time.timestamp() for c in candles]),
        np.array([float(c.open) for c in candles]),
        np.array([float(c.close) for c in candles]),
    )


def streaming(candles: Sequence[Candle]) -> tuple[list[int], list[BacktestTrade], list[float]]:
    strategy, account = build_strategy("ema_crossover"), Account(AccountSettings())
    signals: list[int] = []
    trades: list[BacktestTrade] = []
    equity: list[float] = []
    for i, candle in enumerate(candles):
        trades += account.on_candle(candle).closed
        equity.append(account.equity)
        signal = strategy.update(candle)
        if signal is not None:
            signals.append(i)
            account.on_signal(signal)
    held = account.open_trade()
    return signals, trades + ([held] if held else []), equity


@pytest.mark.parametrize(
    "candles", [real(), walk(6000, 1), walk(6000, 2)], ids=["xrp-eth", "walk-1", "walk-2"]
)
def test_vectorised_signals_trades_and_equity_are_the_streaming_ones(candles: tuple[Candle, ...]) -> None:
    open_time, open_, close = arrays(candles)
    signals, trades, equity = streaming(candles)
    where, _ = crossover_signals(close)
    assert where.tolist() == signals and len(trades) > 10
    run = backtest(open_time, open_, close)
    assert len(run.trades) == len(trades)
    for mine, theirs in zip(run.trades, trades, strict=True):
        assert mine["entry_time"] == theirs.entry_time.timestamp() and mine["open"] == theirs.open
        assert mine["exit_time"] == (None if theirs.exit_time is None else theirs.exit_time.timestamp())
        for key in ("entry_price", "exit_price", "quantity", "pnl", "fees"):
            expected = getattr(theirs, key)
            assert mine[key] == (None if expected is None else pytest.approx(expected, rel=1e-9, abs=1e-9))
    assert run.equity == pytest.approx(np.array(equity), rel=1e-9)


def test_the_ema_is_talibs_seeded_one() -> None:
    _, _, close = arrays(real())
    streaming_ema = build_indicator("EMA", timeperiod=21)
    expected = [v["value"] if (v := streaming_ema.push(x)) else np.nan for x in close]  # type: ignore[attr-defined]
    assert np.isnan(ema(close, 21)[:20]).all() and ema(close, 21)[20] == expected[20]
    assert ema(close, 21) == pytest.approx(np.array(expected), rel=1e-12, nan_ok=True)
