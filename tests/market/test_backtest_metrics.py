"""Backtest metrics against independent pandas formulations and hand-checked cases."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.backtest import (
    METRICS,
    Account,
    AccountSettings,
    BacktestTrade,
    EquityCurve,
    EquityPoint,
    compute_metrics,
    format_metric,
)
from market.types import Signal

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def points(values: list[float], minutes: int = 1, positions: list[float] | None = None) -> list[EquityPoint]:
    """Equity at the closes of consecutive candles of ``minutes`` opening at T0 (close = value / 10)."""
    step = timedelta(minutes=minutes)
    held = positions or [0.0] * len(values)
    return [
        EquityPoint(T0 + (i + 1) * step, v / 10, v, held[i], v) for i, (v) in enumerate(values)
    ]  # fmt: skip


def trade(pnl: float, minutes: int = 5, fees: float = 1.0, open_: bool = False) -> BacktestTrade:
    exit_time = None if open_ else T0 + timedelta(minutes=minutes)
    return BacktestTrade("long", T0, 100.0, exit_time, None if open_ else 101.0, 1.0, pnl, fees, open_)


def test_every_key_is_documented_in_order() -> None:
    result = compute_metrics(points([100.0]), [], AccountSettings(cash=100), "1m", 10.0)
    assert list(result) == list(METRICS)
    with open("docs/backtest.md") as doc:
        text = doc.read()
    assert all(f"`{key}`" in text for key in METRICS)


def test_drawdown_peak_and_trough_by_hand() -> None:
    # cash 100, then closes 1..7: 110 110 99 105 120 90 130; running peak 110 110 110 110 120 120 130.
    # falls: 0 0 -0.1 -0.045 0 -0.25 0 -> the deepest is 90 / 120 - 1 = -0.25 at close 6 (00:06),
    # from the peak at close 5 (00:05).
    result = compute_metrics(
        points([110, 110, 99, 105, 120, 90, 130]), [], AccountSettings(cash=100), "1m", 10.0
    )
    assert result["max_drawdown"] == pytest.approx(-0.25)
    assert result["max_drawdown_start"] == "2026-01-01T00:05:00+00:00"
    assert result["max_drawdown_end"] == "2026-01-01T00:06:00+00:00"


def test_drawdown_from_a_flat_peak_starts_at_its_last_point() -> None:
    # 110 held for two closes then 99: the fall starts after 00:02, the last close at the peak.
    result = compute_metrics(points([110, 110, 99]), [], AccountSettings(cash=100), "1m", 10.0)
    assert result["max_drawdown"] == pytest.approx(-0.1)
    assert (result["max_drawdown_start"], result["max_drawdown_end"]) == (
        "2026-01-01T00:02:00+00:00",
        "2026-01-01T00:03:00+00:00",
    )
    # a fall from the starting cash starts at the first open
    result = compute_metrics(points([90, 95]), [], AccountSettings(cash=100), "1m", 10.0)
    assert result["max_drawdown_start"] == "2026-01-01T00:00:00+00:00" == result["start"]


def test_a_run_without_trades_gives_none_where_undefined() -> None:
    result = compute_metrics(points([1000.0] * 60, minutes=60), [], AccountSettings(cash=1000), "1h", 10.0)
    assert result["start"] == "2026-01-01T00:00:00+00:00" and result["end"] == "2026-01-03T12:00:00+00:00"
    assert (result["candles"], result["trades"], result["open_trades"]) == (60, 0, 0)
    assert (result["total_return"], result["cagr"], result["exposure"], result["fees_paid"]) == (0, 0, 0, 0)
    assert (result["max_drawdown"], result["max_drawdown_start"], result["max_drawdown_end"]) == (
        0,
        None,
        None,
    )
    for key in ("sharpe", "sortino", "calmar", "win_rate", "profit_factor", "expectancy"):
        assert result[key] is None, key
    for key in ("average_duration_s", "best_trade", "worst_trade"):
        assert result[key] is None, key
    assert result["buy_and_hold_return"] == pytest.approx(100 / 10 - 1)  # last close 1000 / 10


def test_trade_metrics_by_hand() -> None:
    # closed: +30, -10, +20, -20 (durations 5, 10, 15, 30 min); one open trade (+99, fees 0.5).
    closed = [trade(30, 5), trade(-10, 10), trade(20, 15), trade(-20, 30)]
    result = compute_metrics(
        points([100, 120]), [*closed, trade(99, fees=0.5, open_=True)], AccountSettings(100), "1m", 10
    )
    assert (result["trades"], result["open_trades"]) == (4, 1)
    assert result["win_rate"] == 0.5
    assert result["profit_factor"] == pytest.approx(50 / 30)
    assert result["expectancy"] == pytest.approx(20 / 4)
    assert (result["best_trade"], result["worst_trade"]) == (30, -20)
    assert result["average_duration_s"] == pytest.approx(15 * 60)
    assert result["fees_paid"] == pytest.approx(4.5)
    # only winners: the profit factor is infinite, so undefined
    assert compute_metrics(points([100]), [trade(5)], AccountSettings(100), "1m", 10)["profit_factor"] is None


def test_edges_give_none_not_nan_or_infinity() -> None:
    # +50 % in two minutes compounds past a double over a year
    assert compute_metrics(points([150, 150]), [], AccountSettings(cash=100), "1m", 10.0)["cagr"] is None
    # a short gone wrong: negative equity has no CAGR and no per-candle returns after it
    result = compute_metrics(points([50, -10, -20]), [], AccountSettings(cash=100), "1m", 10.0)
    assert (result["cagr"], result["sharpe"], result["sortino"], result["calmar"]) == (None,) * 4
    assert compute_metrics(points([0.0]), [], AccountSettings(cash=100), "1d", 10.0)["cagr"] == -1
    with pytest.raises(ValueError, match="at least one candle"):
        compute_metrics([], [], AccountSettings(), "1m", 10.0)


def pandas_metrics(values: list[float], cash: float, minutes: int) -> dict[str, float]:
    """The same definitions written with pandas, independently of the module."""
    start = pd.Timestamp(T0)
    index = [start] + [start + pd.Timedelta(minutes=minutes * (i + 1)) for i in range(len(values))]
    s = pd.Series([cash, *values], index=index)
    r = s.pct_change().dropna()
    per_year = 365 * 24 * 60 / minutes
    falls = s / s.cummax() - 1
    trough = falls.idxmin()
    head = s.loc[:trough]
    peak = head[head == s.cummax().loc[trough]].index[-1]
    years = (index[-1] - index[0]) / pd.Timedelta(days=365)
    cagr = (s.iloc[-1] / cash) ** (1 / years) - 1 if minutes >= 60 else math.nan
    return {
        "total_return": s.iloc[-1] / cash - 1,
        "sharpe": r.mean() / r.std() * math.sqrt(per_year),
        "sortino": r.mean() / math.sqrt((r.clip(upper=0) ** 2).mean()) * math.sqrt(per_year),
        "max_drawdown": falls.min(),
        "max_drawdown_start": peak.isoformat(),
        "max_drawdown_end": trough.isoformat(),
        "cagr": cagr,
        "calmar": cagr / abs(falls.min()),
    }


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(-0.05, 0.05).map(lambda x: round(x, 6)), min_size=3, max_size=200).filter(
        lambda r: min(r) < 0 < max(r)
    ),
    st.sampled_from([(1, "1m"), (5, "5m"), (60, "1h"), (1440, "1d")]),
)
def test_return_metrics_match_pandas(returns: list[float], tf: tuple[int, str]) -> None:
    minutes, name = tf
    cash = 10_000.0
    values = list(cash * np.cumprod(1 + np.array(returns)))
    result = compute_metrics(points(values, minutes), [], AccountSettings(cash=cash), name, 1.0)
    expected = pandas_metrics(values, cash, minutes)
    for key in ("total_return", "sharpe", "sortino", "max_drawdown"):
        assert result[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key
    assert (result["max_drawdown_start"], result["max_drawdown_end"]) == (
        expected["max_drawdown_start"],
        expected["max_drawdown_end"],
    )
    if minutes >= 60:  # minutes compound past a double too easily
        assert result["cagr"] == pytest.approx(expected["cagr"], rel=1e-9)
        assert result["calmar"] == pytest.approx(expected["calmar"], rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(1, 1000), st.floats(1, 1000)), min_size=2, max_size=80),
    st.lists(st.tuples(st.integers(0, 79), st.sampled_from(["buy", "sell", "flat"])), max_size=20),
    st.booleans(),
)
def test_metrics_of_an_account_run_match_its_books(bars, signals, short: bool) -> None:
    s = AccountSettings(fee=0.001, slippage=0.0005, short=short)
    account, curve, trades, fills = Account(s), EquityCurve(), [], []
    due = sorted(signals)
    for i, (o, c) in enumerate(bars):
        opened = T0 + timedelta(hours=i)
        for _, action in [x for x in due if x[0] == i]:
            account.on_signal(Signal("okx", "X-Y", "1h", opened, "t", action, "", {}))
        events = account.on_bar(opened, opened + timedelta(hours=1), o, c)
        fills += events.fills
        trades += events.closed
        curve.record(account)
    still = account.open_trade()
    everything = trades + ([still] if still else [])
    result = compute_metrics(curve, everything, s, "1h", bars[0][0])
    assert result == compute_metrics(list(curve), everything, s, "1h", bars[0][0])
    assert result["final_equity"] == account.equity
    assert result["fees_paid"] == pytest.approx(sum(f.fee for f in fills))
    assert result["total_return"] == pytest.approx(
        math.fsum(t.pnl for t in everything) / s.cash, rel=1e-9, abs=1e-12
    )
    held = pd.Series(curve.positions)
    assert result["exposure"] == pytest.approx((held != 0).mean())
    pnl = pd.Series([t.pnl for t in trades], dtype=float)
    assert result["trades"] == len(trades) and result["open_trades"] == (still is not None)
    assert result["win_rate"] == (pytest.approx((pnl > 0).mean()) if len(pnl) else None)
    assert result["expectancy"] == (pytest.approx(pnl.mean()) if len(pnl) else None)
    assert result["buy_and_hold_return"] == pytest.approx(bars[-1][1] / bars[0][0] - 1)


def test_format_metric() -> None:
    assert format_metric("total_return", 0.1234) == "+12.34 %"
    assert format_metric("win_rate", 0.5) == "50.0 %"
    assert format_metric("sharpe", None) == "n/a"
    assert format_metric("trades", 1234) == "1,234"
    assert format_metric("final_equity", 10_500.456) == "10,500.46"
    assert format_metric("average_duration_s", 3 * 3600 + 5 * 60) == "3h 05m"
    assert format_metric("average_duration_s", 2 * 86_400 + 7200) == "2d 2h"
    assert format_metric("average_duration_s", 95) == "1m 35s"
    assert format_metric("start", "2026-01-01T00:00:00+00:00") == "2026-01-01T00:00:00+00:00"
