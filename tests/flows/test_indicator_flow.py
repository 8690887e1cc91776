"""Indicators and signals computed in the flow: stored, equal to TA-Lib over the exchange's own candles,
identical across runs and workers, and free of look-ahead (prefix invariance, TIME.md rules 7-8)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
import talib

from configs.indicators import load_indicator_config, parse_indicator_config
from connectors.database import DatabaseSink
from market.types import IndicatorValue, Signal
from sql.migrate import migrate
from tests.flows.flowkit import BTC_TAPE, TAPES, XRP_TAPE, ms, run_replay
from tests.support.tapes import exchange_candles, tape_rows

CONFIG = parse_indicator_config(
    {
        "profiles": [
            {
                "instruments": "*",
                "timeframes": ["1m", "5m"],
                "indicators": [
                    {"indicator": "EMA", "label": "ema_9", "params": {"timeperiod": 9}},
                    {"indicator": "RSI", "params": {"timeperiod": 14}},
                    {"indicator": "MACD"},
                ],
                "strategies": [{"strategy": "ema_crossover", "params": {"fast": 9, "slow": 21}}],
            }
        ]
    }
)


def test_indicator_values_in_the_database_equal_talib_on_the_exchange_candles(
    pg_url: str, tmp_path: Path
) -> None:
    migrate(pg_url)
    run_replay([XRP_TAPE], database=DatabaseSink(pg_url, tmp_path / "spool"), indicators=CONFIG)
    exchange = exchange_candles(TAPES / "XRP-ETH-exchange-candles-1m.csv")
    closes_at = sorted(exchange)[:-1]  # the last exchange bar was incomplete
    closes = np.array([float(exchange[t][3]) for t in closes_at])
    oracle = {
        ("ema_9", "value"): talib.EMA(closes, timeperiod=9),
        ("rsi", "value"): talib.RSI(closes, timeperiod=14),
        ("macd", "macdsignal"): talib.MACD(closes)[1],
    }
    with psycopg.connect(pg_url) as conn:
        for (label, output), expected in oracle.items():
            rows = dict(
                conn.execute(
                    "SELECT time, value FROM indicators WHERE symbol = 'XRP-ETH' AND timeframe = '1m'"
                    " AND indicator = %s AND output = %s",
                    (label, output),
                ).fetchall()
            )
            wanted = {t: v for t, v in zip(closes_at, expected, strict=True) if not np.isnan(v)}
            assert set(rows) == set(wanted), (label, output)
            for t, v in wanted.items():
                assert rows[t] == pytest.approx(v, rel=1e-9, abs=1e-15), (label, output, t)
        signals = conn.execute("SELECT time, action, reason FROM signals WHERE timeframe = '1m'").fetchall()
    assert signals, "an EMA 9/21 crossover happens on 2.5 days of minutes"
    assert all(t in set(closes_at) for t, _, _ in signals)


def key(x: IndicatorValue | Signal) -> tuple[object, ...]:
    """Order within a series is the flow's; across series it depends on scheduling, so sort by this."""
    label = x.indicator if isinstance(x, IndicatorValue) else x.strategy
    return (x.symbol, x.timeframe, x.time, type(x).__name__, label)


def test_prefix_invariance_of_indicators_and_signals() -> None:
    rows = tape_rows(XRP_TAPE)
    full = run_replay([XRP_TAPE], indicators=CONFIG)
    for hours in (5, 17, 29):
        cut = ms(rows[0]["created_time"]) + timedelta(hours=hours, minutes=7, seconds=13)
        early = run_replay([XRP_TAPE], indicators=CONFIG, replay_end=cut)
        before_cut = [x for x in full.indicators if x.time <= cut]
        assert sorted(early.indicators, key=key) == sorted(before_cut, key=key)
        assert any(isinstance(x, Signal) for x in early.indicators)


def test_same_indicators_and_signals_with_two_workers_and_on_a_second_run() -> None:
    one = run_replay([XRP_TAPE, BTC_TAPE], indicators=CONFIG)
    again = run_replay([XRP_TAPE, BTC_TAPE], indicators=CONFIG)
    two = run_replay([XRP_TAPE, BTC_TAPE], indicators=CONFIG, workers=2)
    assert sorted(one.indicators, key=key) == sorted(again.indicators, key=key)
    assert sorted(one.indicators, key=key) == sorted(two.indicators, key=key)


def test_the_shipped_indicator_config_runs_in_the_flow() -> None:
    captured = run_replay([BTC_TAPE], indicators=load_indicator_config())
    assert {x.timeframe for x in captured.indicators} >= {"1m"}
