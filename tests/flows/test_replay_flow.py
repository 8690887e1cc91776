"""The replay dataflow (the same graph as live) against the exchange's own candles, on a real database."""

from __future__ import annotations

import functools
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.database import DatabaseSink
from market.types import Candle
from sql.migrate import migrate
from tests.flows.flowkit import (
    BTC_TAPE,
    MATIC_TAPE,
    MINUTE,
    TAPES,
    XRP_TAPE,
    ms,
    ohlcv,
    run_replay,
)
from tests.support.tapes import exchange_candles, tape_rows


def test_xrp_eth_1m_and_5m_equal_the_exchange_candles(pg_url: str, tmp_path: Path) -> None:
    migrate(pg_url)
    captured = run_replay([XRP_TAPE], database=DatabaseSink(pg_url, tmp_path / "spool"))
    expected_1m = exchange_candles(TAPES / "XRP-ETH-exchange-candles-1m.csv")
    last_close = max(expected_1m)
    with psycopg.connect(pg_url) as conn:
        stored = {
            row[0]: tuple(row[1:6]) + (row[6],)
            for row in conn.execute(
                "SELECT time, open, high, low, close, volume, trade_count FROM candles_1m"
                " WHERE exchange = 'okx' AND symbol = 'XRP-ETH'"
            )
        }
    # Every exchange interval but the last (still forming when the klines were taken) is stored, equal.
    assert set(stored) == set(expected_1m) - {last_close}
    for close, values in expected_1m.items():
        if close != last_close:
            assert stored[close][:5] == values, close
    flat = [close for close, row in stored.items() if row[5] == 0]
    assert len(flat) == 1091  # SOURCES.md: the exchange's 1,091 flat minutes
    assert all(stored[c][0] == stored[c][3] == stored[c][1] == stored[c][2] for c in flat)

    expected_5m = exchange_candles(TAPES / "XRP-ETH-exchange-candles-5m.csv")
    got_5m = {c.close_time: ohlcv(c) for c in captured.of("5m")}
    assert set(got_5m) == set(expected_5m) - {max(expected_5m)}
    assert all(got_5m[close] == expected_5m[close] for close in got_5m)


def test_matic_swap_minute_equals_okx_candle() -> None:
    captured = run_replay(
        [MATIC_TAPE], replay_end=ms("1692547320000"), contract_values={"MATIC-USDT-SWAP": Decimal(10)}
    )
    okx = tape_rows(TAPES / "MATIC-USDT-SWAP-candle-1m-2023-08-20T1601Z.csv")[0]
    [candle] = captured.of("1m")
    assert candle.close_time == ms(okx["open_time_ms"]) + MINUTE
    assert ohlcv(candle) == tuple(Decimal(okx[k]) for k in ("open", "high", "low", "close", "vol_contracts"))
    assert candle.quote_volume == Decimal(okx["vol_ccy_quote"])


def test_the_last_incomplete_window_is_not_emitted_and_a_declared_end_is_honoured() -> None:
    rows = tape_rows(XRP_TAPE)
    last_trade = ms(rows[-1]["created_time"])
    captured = run_replay([XRP_TAPE])
    assert max(c.close_time for c in captured.of("1m")) <= last_trade
    cut = ms(rows[0]["created_time"]) + timedelta(hours=1, seconds=30)
    early = run_replay([XRP_TAPE], replay_end=cut)
    assert max(c.close_time for c in early.of("1m")) <= cut
    # Candles up to the declared end are those of the full run (prefix invariance, rule 8).
    assert [c for c in captured.candles if c.close_time <= cut] == early.candles


def test_two_workers_give_the_same_candles_as_one() -> None:
    one = run_replay([XRP_TAPE, BTC_TAPE])
    two = run_replay([XRP_TAPE, BTC_TAPE], workers=2)
    key = lambda c: (c.symbol, c.timeframe, c.close_time)  # noqa: E731
    assert sorted(one.candles, key=key) == sorted(two.candles, key=key)
    assert {c.symbol for c in one.candles} == {"XRP-ETH", "BTC-USDT"}


@pytest.mark.parametrize("timeframe", ["5m", "15m", "1h", "4h", "1d"])
def test_higher_timeframes_equal_candles_built_directly_from_trades(timeframe: str) -> None:
    """TIME.md rule 6: the rollup of 1m candles equals the candle of the trades in [open, close)."""
    import pandas as pd

    captured = run_replay([XRP_TAPE])
    frame = pd.read_csv(XRP_TAPE, dtype={"price": str, "size": str})
    frame["time"] = pd.to_datetime(frame["created_time"], unit="ms", utc=True)
    frame["price"] = frame["price"].map(Decimal)
    frame["size"] = frame["size"].map(Decimal)
    frame = frame.sort_values(["time", "trade_id"], kind="stable").set_index("time")
    rule = {"5m": "5min", "15m": "15min", "1h": "1h", "4h": "4h", "1d": "1D"}[timeframe]
    # UTC epoch-aligned buckets; pandas aligns day buckets to midnight itself (which is the epoch grid).
    origin = {} if rule == "1D" else {"origin": "epoch"}
    grouped = frame.resample(rule, closed="left", label="right", **origin)
    expected = {}
    for close, group in grouped:
        if len(group):
            prices = list(group["price"])
            expected[close.to_pydatetime()] = (
                prices[0],
                max(prices),
                min(prices),
                prices[-1],
                sum(group["size"]),
            )
    got = {c.close_time: ohlcv(c) for c in captured.of(timeframe) if c.trade_count > 0}
    assert got  # the tape spans 2.5 days: every timeframe closes at least once
    for close, values in got.items():
        assert values == expected[close], close


@functools.cache
def _full_xrp_run() -> tuple[Candle, ...]:
    return tuple(run_replay([XRP_TAPE]).candles)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut_ms=st.integers(min_value=0, max_value=2 * 86_400_000 + 11 * 3_600_000))
def test_prefix_invariance_at_random_cut_points(cut_ms: int) -> None:
    """TIME.md rule 8 through the whole flow: with the tape cut at C (its end declared as C), every
    candle stamped <= C is identical to the full run's, and none is stamped after C."""
    cut = ms(tape_rows(XRP_TAPE)[0]["created_time"]) + timedelta(milliseconds=cut_ms)
    early = run_replay([XRP_TAPE], replay_end=cut)
    key = lambda c: (c.timeframe, c.close_time)  # noqa: E731
    assert all(c.close_time <= cut for c in early.candles)
    expected = [c for c in _full_xrp_run() if c.close_time <= cut]
    assert sorted(early.candles, key=key) == sorted(expected, key=key)
