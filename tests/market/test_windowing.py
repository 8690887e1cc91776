"""SeriesWindows and the live Watermark against independent oracles (docs/time.md rules 1, 3-6, 8-10): real
tapes, duplicates, state, the live watermark (generated arrival orders: test_windowing_arrival.py).

Oracles: the exchange's own XRP-ETH 1m/5m klines and OKX's own MATIC-USDT-SWAP candle
(tests/data/SOURCES.md), pandas ``resample(closed="left", label="right")`` on the BTC-USDT tape, and
``reference`` (tests/market/windowing_kit.py): candles computed straight from the trades with integer
milliseconds.
"""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.timeframes import TF_1D, TF_1H, TF_1M, TF_4H, TF_5M, TF_15M, Timeframe
from market.types import Trade, ms_from_utc, utc_from_ms
from market.watermark import Watermark, live_watermark
from market.windowing import Emitted, SeriesWindows
from tests.market.windowing_kit import (
    ALL,
    BTC,
    GRACE,
    MATIC,
    MATIC_CANDLE,
    MIN,
    T0_MS,
    VWAP,
    XRP,
    XRP_1M,
    XRP_5M,
    at,
    by_tf,
    make_trades,
    reference,
    rows,
    run,
    shuffle_within,
    trade,
    xrp_replay,
)
from tests.support.tapes import tape_rows, tape_trades

# ---------------------------------------------------------------- real tapes against exchange candles


@pytest.mark.parametrize(("path", "tf", "count"), [(XRP_1M, TF_1M, 3559), (XRP_5M, TF_5M, 711)])
def test_xrp_replay_equals_exchange_klines(path: Path, tf: Timeframe, count: int) -> None:
    """Every 1m/5m interval, flat ones included, equals the exchange's kline; the last, incomplete one
    (closing after the tape's end) is not emitted (rule 9)."""
    got = [c for c in xrp_replay().candles if c.timeframe == tf.name]
    expected = [
        (
            int(k["open_time"]) + tf.seconds * 1000,
            *(Decimal(k[f]) for f in ("open", "high", "low", "close", "volume")),
        )
        for k in tape_rows(path)
    ]
    assert len(got) == count == len(expected) - 1
    assert [(ms_from_utc(c.close_time), c.open, c.high, c.low, c.close, c.volume) for c in got] == expected[
        :-1
    ]
    assert all(c.close_time - c.open_time == tf.length for c in got)
    assert sum(c.is_flat for c in got) > 0


def test_xrp_replay_order_and_no_late_or_duplicates() -> None:
    out = xrp_replay()
    assert out.late == () and out.duplicates == 0
    order = {tf.name: i for i, tf in enumerate(ALL)}
    keys = [(c.close_time, order[c.timeframe]) for c in out.candles]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)  # close order, 1m first; each once


def test_matic_swap_with_contract_value_equals_okx_candle() -> None:
    okx = tape_rows(MATIC_CANDLE)[0]
    windows = SeriesWindows("okx", "MATIC-USDT-SWAP", GRACE, contract_value=Decimal(okx["ct_val"]))
    close = utc_from_ms(int(okx["open_time_ms"]) + MIN)
    out = run(windows, tape_trades(MATIC), close)  # the archive holds the whole minute: its end is the close
    (candle,) = by_tf(out.candles, TF_1M)
    fields = ("open", "high", "low", "close", "vol_contracts", "vol_ccy_quote")
    assert candle[1:8] == (ms_from_utc(close), *(Decimal(okx[f]) for f in fields))
    assert candle[8] == 14


@cache
def btc_replay() -> Emitted:
    trades = tape_trades(BTC)
    return run(SeriesWindows("okx", "BTC-USDT", GRACE), trades, trades[-1].ts_event)


@pytest.mark.parametrize(("tf", "rule"), [(TF_1M, "1min"), (TF_5M, "5min"), (TF_15M, "15min"), (TF_1H, "1h"),
                                          (TF_4H, "4h"), (TF_1D, "1D")])  # fmt: skip
def test_btc_candles_equal_pandas_resample_of_the_trades(tf: Timeframe, rule: str) -> None:
    """1m against pandas, and the in-stream rollups against pandas straight from the trades (rule 6)."""
    trades = tape_trades(BTC)
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime([ms_from_utc(t.ts_event) for t in trades], unit="ms", utc=True),
            "id": [t.trade_id for t in trades],
            "price": [t.price for t in trades],
            "size": [t.size for t in trades],
            "quote": [t.price * t.size for t in trades],
        }
    )
    frame = frame.sort_values(["ts", "id"]).set_index("ts")
    with localcontext(prec=80):
        agg = frame.resample(rule, closed="left", label="right", origin="start_day").agg(
            {
                "price": ["first", "max", "min", "last"],
                "size": "sum",
                "quote": "sum",
                "id": ["count", "first", "last"],
            }
        )
    end = trades[-1].ts_event
    expected = [
        (tf.name, ms_from_utc(label.to_pydatetime()), *v[:7], VWAP.divide(v[5], v[4]), *v[7:])
        for label, v in zip(agg.index, agg.itertuples(index=False, name=None), strict=True)
        if label.to_pydatetime() <= end
    ]  # fmt: skip
    got = by_tf(btc_replay().candles, tf)
    assert got == expected and len(got) >= 1
    if tf == TF_1M:
        assert len(got) == 11  # 23:55 .. 00:05; the minute closing at 00:06 is after the tape's end


def with_overlaps(trades: tuple[Trade, ...], every: int, back: timedelta) -> list[Trade]:
    """Every ``every`` trades, those of the last ``back`` of event time are delivered again (a reconnect or
    backfill overlap)."""
    out: list[Trade] = []
    for i, t in enumerate(trades):
        out.append(t)
        if i and i % every == 0:
            out.extend(u for u in trades[max(0, i - 500) : i] if u.ts_event >= t.ts_event - back)
    return out


def test_duplicates_from_replayed_overlaps_change_nothing() -> None:
    """Rule 10 on the XRP tape: overlaps reaching back over emitted candles (within the 1 h dedup
    retention) are dropped as duplicates, not reported late."""
    trades = tape_trades(XRP)
    noisy = with_overlaps(trades, 300, timedelta(minutes=55))
    assert len(noisy) > len(trades) + 1_000
    out = run(SeriesWindows("okx", "XRP-ETH", GRACE), noisy, trades[-1].ts_event)
    assert out.candles == xrp_replay().candles
    assert out.late == () and out.duplicates == len(noisy) - len(trades)


@settings(max_examples=100, deadline=None)
@given(
    rows,
    st.lists(st.tuples(st.integers(0, 49), st.integers(0, 100)), max_size=20),
    st.randoms(use_true_random=False),
)
def test_shuffled_duplicates_change_nothing(
    data: list[tuple[int, str]], copies: list[tuple[int, int]], rnd: random.Random
) -> None:
    trades = make_trades(data, rnd)
    arrival = shuffle_within(trades, GRACE, rnd)
    for original, later in copies:  # a copy of trade `original`, delivered `later` positions after it
        if original < len(trades):
            position = arrival.index(trades[original])
            arrival.insert(min(position + 1 + later, len(arrival)), trades[original])
    out = run(SeriesWindows("okx", "BTC-USDT", GRACE), arrival, at(10 * MIN))
    assert out.late == () and out.duplicates == len(arrival) - len(trades)
    for tf in (TF_1M, TF_5M):
        assert by_tf(out.candles, tf) == reference(trades, tf, T0_MS + 10 * MIN)


def test_dedup_retention_bounds_memory_and_old_repeats_are_late() -> None:
    """A repeat within the retention is a duplicate, beyond it a late trade; neither changes a candle."""
    windows = SeriesWindows(
        "okx", "BTC-USDT", GRACE, timeframes=(TF_1M,), dedup_retention=timedelta(minutes=5)
    )
    old = trade(10_000, "100", 1)
    windows.on_trade(old)
    windows.on_trade(trade(4 * MIN, "101", 2))
    assert windows.on_trade(old).duplicates == 1
    windows.on_trade(trade(7 * MIN, "102", 3))  # watermark 12:06:58: [12:00, 12:01) is beyond 5 minutes
    assert windows.remembered_ids == 2
    again = windows.on_trade(old)
    assert again.duplicates == 0 and [x.trade for x in again.late] == [old]
    assert windows.on_trade(old).late  # not remembered: reported late again, still changing nothing
    out = windows.finish(at(8 * MIN))
    assert by_tf(out.candles, TF_1M)[-1] == reference([trade(7 * MIN, "102", 3)], TF_1M, T0_MS + 8 * MIN)[-1]


def test_state_stays_small_over_a_long_replay() -> None:
    trades = tape_trades(XRP)
    windows = SeriesWindows("okx", "XRP-ETH", GRACE)
    largest = 0
    for i, t in enumerate(trades):
        windows.on_trade(t)
        largest = max(largest, windows.open_windows)
        if i % 1000 == 0:
            wm = windows.watermark
            assert wm is not None
            recent = sum(1 for u in trades[: i + 1] if u.ts_event >= wm - timedelta(hours=1, minutes=2))
            assert windows.remembered_ids <= recent
    assert largest <= 2


@pytest.mark.parametrize("cut", [1, 777, 6_000, 12_476])
def test_pickled_state_continues_identically(cut: int) -> None:
    trades = tape_trades(XRP)
    windows = SeriesWindows("okx", "XRP-ETH", GRACE)
    first = windows.on_trades(trades[:cut])
    resumed = pickle.loads(pickle.dumps(windows))
    rest = run(resumed, trades[cut:], trades[-1].ts_event)
    assert first.candles + rest.candles == xrp_replay().candles


def test_rejects_other_series_and_naive_times() -> None:
    windows = SeriesWindows("okx", "ETH-USDT", GRACE)
    with pytest.raises(ValueError):
        windows.on_trade(trade(0))
    with pytest.raises(ValueError):
        windows.advance(datetime(2024, 1, 1))
    with pytest.raises(ValueError):
        SeriesWindows("okx", "ETH-USDT", timedelta(seconds=-1))


# ---------------------------------------------------------------- the live watermark


def test_live_watermark_advances_with_elapsed_local_time_only() -> None:
    """Rule 3, live: newest ts_event - grace, plus the local time elapsed since it was seen."""
    newest = at(10_000)
    for skew in (timedelta(0), timedelta(hours=5), -timedelta(minutes=7, milliseconds=3)):
        seen = newest + timedelta(milliseconds=120) + skew  # the local clock may be anywhere
        assert live_watermark(newest, seen, seen, GRACE) == at(8_000)
        assert live_watermark(newest, seen, seen + timedelta(minutes=3), GRACE) == at(3 * MIN + 8_000)
        assert live_watermark(newest, seen, seen - timedelta(seconds=5), GRACE) == at(
            8_000
        )  # clock stepped back


def test_watermark_helper_drives_flat_candles_while_quiet() -> None:
    clock = Watermark(GRACE)
    assert clock.at(datetime(2030, 1, 1, tzinfo=UTC)) is None
    local = datetime(2030, 1, 1, tzinfo=UTC)  # a local clock unrelated to exchange time
    windows = SeriesWindows("okx", "BTC-USDT", GRACE, timeframes=(TF_1M,))
    for t, seen in ((trade(10_000, "100", 1), local), (trade(9_000, "99", 2), local + timedelta(seconds=1))):
        clock.observe(t.ts_event, seen)
        windows.on_trade(t)
    assert clock.seen_at == local  # an older trade does not move the clock
    quiet = clock.at(local + timedelta(minutes=2))
    assert quiet == at(2 * MIN + 8_000)
    out = windows.advance(quiet)
    assert [(r[1], r[5], r[8]) for r in by_tf(out.candles, TF_1M)] == [
        (T0_MS + MIN, Decimal(100), 2),
        (T0_MS + 2 * MIN, Decimal(100), 0),
    ]
