"""The backtest figures' data shaping against independent computations (plain loops), and the layout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from bokeh.models import ColumnDataSource
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboards.backtest_figures import (
    MAX_POINTS,
    display_candles,
    display_equity,
    metric_text,
    monthly_returns,
    run_layout,
    trade_columns,
)
from dashboards.backtest_report import BacktestView
from dashboards.backtests import closes_as_candles, display_timeframe

T0 = datetime(2026, 1, 31, 23, 50, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
equities = st.lists(st.floats(1.0, 1e6, allow_nan=False), min_size=1, max_size=300)


def frame_of(values: list[float], start: datetime = T0) -> pd.DataFrame:
    times = pd.DatetimeIndex([start + (i + 1) * MINUTE for i in range(len(values))])
    return pd.DataFrame({"time": times, "equity": values})


@given(equities, st.integers(1, 40))
@settings(max_examples=60, deadline=None)
def test_display_equity_keeps_the_exact_drawdown(values: list[float], max_points: int) -> None:
    peak, expected = 0.0, []
    for v in values:  # drawdown by the definition, one point at a time
        peak = max(peak, v)
        expected.append(v / peak - 1.0)
    shown = display_equity(frame_of(values), max_points)
    k = -(-len(values) // max_points)
    assert len(shown) == -(-len(values) // k) <= max_points
    for g in range(len(shown)):
        group = slice(g * k, min((g + 1) * k, len(values)))
        assert shown["equity"][g] == values[group][-1]
        assert shown["drawdown"][g] == pytest.approx(min(expected[group]), rel=1e-12, abs=1e-15)
    assert shown["drawdown"].min() == pytest.approx(min(expected), rel=1e-12, abs=1e-15)


@given(
    st.lists(st.tuples(st.floats(1, 100), st.floats(1, 100)), min_size=1, max_size=200), st.integers(1, 30)
)
@settings(max_examples=60, deadline=None)
def test_display_candles_merge_consecutive_candles(pairs: list[tuple[float, float]], max_points: int) -> None:
    opens = [o for o, _ in pairs]
    closes = [c for _, c in pairs]
    candles = frame_of(closes).rename(columns={"equity": "close"})
    candles = candles.assign(
        open=opens,
        high=[max(o, c) + 1 for o, c in pairs],
        low=[min(o, c) - 1 for o, c in pairs],
        volume=[float(i) for i in range(len(pairs))],
    )
    shown = display_candles(candles, max_points)
    k = -(-len(pairs) // max_points)
    for g, row in shown.iterrows():
        part = candles.iloc[int(g) * k : (int(g) + 1) * k]
        assert row["time"] == part["time"].iloc[-1]
        assert row["open"] == part["open"].iloc[0] and row["close"] == part["close"].iloc[-1]
        assert row["high"] == max(part["high"]) and row["low"] == min(part["low"])
        assert row["volume"] == sum(part["volume"])
    assert len(shown) <= max_points


def test_monthly_returns_by_the_interval_each_point_closes() -> None:
    # closes 23:59 Jan 31, 00:00 Feb 1 (the last January candle), 00:01 Feb 1, 00:00 Mar 1 (February's last)
    times = pd.DatetimeIndex(
        [
            datetime(2026, 1, 31, 23, 59, tzinfo=UTC),
            datetime(2026, 2, 1, 0, 0, tzinfo=UTC),
            datetime(2026, 2, 1, 0, 1, tzinfo=UTC),
            datetime(2026, 3, 1, 0, 0, tzinfo=UTC),
            datetime(2026, 3, 1, 0, 1, tzinfo=UTC),
        ]
    )
    equity = pd.DataFrame({"time": times, "equity": [10_100.0, 10_500.0, 9_000.0, 11_550.0, 11_000.0]})
    table = monthly_returns(equity, 10_000.0)
    assert list(table.index) == [2026]
    assert table.loc[2026, 1] == pytest.approx(10_500 / 10_000 - 1)
    assert table.loc[2026, 2] == pytest.approx(11_550 / 10_500 - 1)
    assert table.loc[2026, 3] == pytest.approx(11_000 / 11_550 - 1)
    assert table.loc[2026, [m for m in range(4, 13)]].isna().all()


def test_monthly_returns_chain_to_the_total_return() -> None:
    rng = np.random.default_rng(7)
    values = list(10_000 * np.exp(np.cumsum(rng.normal(0, 0.01, 4000))))
    equity = frame_of(values, datetime(2025, 12, 20, tzinfo=UTC))
    equity["time"] = equity["time"] + (equity.index * pd.Timedelta(minutes=59)).to_series().values
    table = monthly_returns(equity, 10_000.0)
    growth = np.prod([1 + r for r in table.to_numpy().ravel() if not np.isnan(r)])
    assert growth == pytest.approx(values[-1] / 10_000)


def test_trade_columns_place_fills_at_their_instants() -> None:
    entry = datetime(2026, 2, 1, 0, 3, tzinfo=UTC)
    trades = [
        {"entry_time": entry.isoformat(), "entry_price": 10.0, "exit_time": entry + 5 * MINUTE,
         "exit_price": 11.0, "quantity": 2.0, "pnl": 1.96, "fees": 0.04, "side": "long", "open": False},
        {"entry_time": entry + 9 * MINUTE, "entry_price": 12.0, "exit_time": None, "exit_price": None,
         "quantity": 1.5, "pnl": -0.5, "fees": 0.02, "side": "short", "open": True},
    ]  # fmt: skip
    columns = trade_columns(trades)
    assert list(columns["entry_time"]) == [entry.timestamp() * 1000, (entry + 9 * MINUTE).timestamp() * 1000]
    assert columns["exit_time"][0] == (entry + 5 * MINUTE).timestamp() * 1000
    assert np.isnan(columns["exit_time"][1]) and np.isnan(columns["exit_price"][1])
    assert columns["state"] == ["closed", "open"] and columns["exit_text"][1] == "still open"
    assert columns["entry_marker"] == ["triangle", "inverted_triangle"]
    assert columns["entry_text"][0] == "2026-02-01 00:03 UTC"


def test_metric_text() -> None:
    assert metric_text("total_return", 0.1234) == "12.34 %"
    assert metric_text("max_drawdown", -0.05) == "-5.00 %"
    assert metric_text("sharpe", None) == "n/a"
    assert metric_text("trades", 1200) == "1,200"
    assert metric_text("final_equity", 10_523.456) == "10,523.46"
    assert metric_text("start", "2026-01-01T00:05:00+00:00") == "2026-01-01 00:05 UTC"
    assert metric_text("max_drawdown_end", "2026-01-01T02:05:00+02:00") == "2026-01-01 00:05 UTC"
    assert metric_text("label", "ema_crossover") == "ema_crossover"
    assert metric_text("code_version", "0.1.0+g1a2b3c") == "0.1.0+g1a2b3c"
    assert metric_text("average_duration_s", 6960.0) == "1h 56m"
    assert metric_text("average_duration_s", 2 * 86400 + 3 * 3600 + 300) == "2d 3h 5m"
    assert metric_text("average_duration_s", 45.2) == "45s"


def test_layout_thins_a_long_series_and_keeps_every_trade() -> None:
    n = 3 * MAX_POINTS + 7
    closes = list(100 + np.sin(np.arange(n) / 50))
    candles = closes_as_candles(frame_of(closes).rename(columns={"equity": "close"}))
    equity = frame_of([10_000 * c / closes[0] for c in closes])
    trades = [
        {"entry_time": T0 + i * 60 * MINUTE, "entry_price": 100.0, "exit_time": T0 + (i * 60 + 30) * MINUTE,
         "exit_price": 100.5, "quantity": 1.0, "pnl": 0.5, "fees": 0.0, "side": "long", "open": False}
        for i in range(40)
    ]  # fmt: skip
    layout = run_layout(candles, equity, trades, 10_000.0, "t")
    sources = {m.name: m for m in layout.references() if isinstance(m, ColumnDataSource) and m.name}
    assert len(sources["tcp-bt-trades"].data["pnl"]) == 40
    assert len(sources["tcp-bt-candles"].data["time"]) <= MAX_POINTS
    assert sources["tcp-bt-candles"].data["close"][-1] == closes[-1]
    assert len(sources["tcp-bt-equity-points"].data["time"]) <= MAX_POINTS
    hold = sources["tcp-bt-hold"].data["equity"]  # buy and hold from the first open
    assert hold[-1] == pytest.approx(10_000 * closes[-1] / candles["open"].iloc[0])


def test_closes_as_candles_open_at_the_previous_close() -> None:
    bars = closes_as_candles(frame_of([5.0, 6.0, 4.0]).rename(columns={"equity": "close"}))
    assert bars[["open", "high", "low", "close"]].values.tolist() == [
        [5.0, 5.0, 5.0, 5.0],
        [5.0, 6.0, 5.0, 6.0],
        [6.0, 6.0, 4.0, 4.0],
    ]


@pytest.mark.parametrize(
    ("timeframe", "days", "expected"),
    [("1m", 3, "1m"), ("1m", 4, "5m"), ("1m", 365, "4h"), ("5m", 3, "5m"), ("1h", 30, "1h"),
     ("1h", 365 * 3, "1d"), ("1m", 365 * 30, "1d")],
)  # fmt: skip
def test_display_timeframe(timeframe: str, days: int, expected: str) -> None:
    assert display_timeframe(timeframe, T0, T0 + timedelta(days=days)) == expected


def test_a_view_needs_aware_times_and_its_columns() -> None:
    candles = pd.DataFrame(
        {
            "time": [datetime(2026, 1, 1)],
            "open": [1.0],
            "high": [1.0],
            "low": [1.0],
            "close": [1.0],
            "volume": [0.0],
        }
    )
    equity = pd.DataFrame(columns=["time", "close", "cash", "position", "equity"])
    with pytest.raises(ValueError, match="timezone-aware"):
        BacktestView("t", candles, equity)
    with pytest.raises(ValueError, match="lacks the columns"):
        BacktestView("t", candles.drop(columns="volume").assign(time=pd.Timestamp(0, tz="UTC")), equity)
