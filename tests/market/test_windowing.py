"""SeriesWindows and the live Watermark against independent oracles (docs/time.md rules 1, 3-6, 8-10).

Oracles: the exchange's own XRP-ETH 1m/5m klines and OKX's own MATIC-USDT-SWAP candle
(tests/data/SOURCES.md), pandas ``resample(closed="left", label="right")`` on the BTC-USDT tape, and
``reference`` below: candles computed straight from the trades with integer milliseconds.
"""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, localcontext
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.timeframes import TF_1D, TF_1H, TF_1M, TF_4H, TF_5M, TF_15M, Timeframe
from market.types import Candle, Trade, ms_from_utc, utc_from_ms
from market.watermark import Watermark, live_watermark
from market.windowing import Emitted, SeriesWindows
from tests.support.tapes import tape_rows, tape_trades

TAPES = Path(__file__).resolve().parents[1] / "data" / "tapes"
XRP = TAPES / "XRP-ETH-2019-10-11T0000Z_2019-10-13T1119Z.csv"
XRP_1M = TAPES / "XRP-ETH-exchange-candles-1m.csv"
XRP_5M = TAPES / "XRP-ETH-exchange-candles-5m.csv"
BTC = TAPES / "BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"
MATIC = TAPES / "MATIC-USDT-SWAP-trades-2023-08-20T1601Z.csv"
MATIC_CANDLE = TAPES / "MATIC-USDT-SWAP-candle-1m-2023-08-20T1601Z.csv"
T0_MS = 1_704_110_400_000  # 2024-01-01 12:00:00 UTC
GRACE = timedelta(seconds=2)
MIN = 60_000
Row = tuple[object, ...]


def trade(ms: int, price: str = "100", tid: int = 1, size: str = "1") -> Trade:
    """A BTC-USDT trade ``ms`` after 2024-01-01 12:00 UTC."""
    return Trade("okx", "BTC-USDT", tid, Decimal(price), Decimal(size), "buy", utc_from_ms(T0_MS + ms))


def at(ms: int) -> datetime:
    return utc_from_ms(T0_MS + ms)


def run(windows: SeriesWindows, trades: list[Trade] | tuple[Trade, ...], end: datetime | None) -> Emitted:
    out = windows.on_trades(trades)
    if end is None:
        return out
    fin = windows.finish(end)
    return Emitted(out.candles + fin.candles, out.late + fin.late, out.duplicates)


def row(c: Candle) -> Row:
    return (
        c.timeframe, ms_from_utc(c.close_time), c.open, c.high, c.low, c.close, c.volume, c.quote_volume,
        c.trade_count, c.vwap, c.first_trade_id, c.last_trade_id,
    )  # fmt: skip


VWAP = Context(prec=28)


def reference(
    trades: list[Trade] | tuple[Trade, ...], tf: Timeframe, end_ms: int, flat: bool = True
) -> list[Row]:
    """Candles of ``tf`` straight from the trades: bucket ms // span, sort by (ms, id), scan; flat candles
    for empty buckets after the first trade; only buckets closing at or before ``end_ms``."""
    span = tf.seconds * 1000
    buckets: dict[int, list[tuple[int, int, Decimal, Decimal]]] = {}
    for t in trades:
        ms = ms_from_utc(t.ts_event)
        buckets.setdefault(ms // span, []).append((ms, t.trade_id, t.price, t.size))
    out: list[Row] = []
    if not buckets:
        return out
    previous = None
    k = min(buckets)
    with localcontext(prec=80):
        while (k + 1) * span <= end_ms:
            group = sorted(buckets.get(k, []))
            if group:
                prices = [g[2] for g in group]
                volume = sum(g[3] for g in group)
                quote = sum(g[2] * g[3] for g in group)
                previous = prices[-1]
                vwap = VWAP.divide(quote, volume)
                out.append(
                    (tf.name, (k + 1) * span, prices[0], max(prices), min(prices), prices[-1], volume, quote,
                     len(group), vwap, group[0][1], group[-1][1])
                )  # fmt: skip
            elif flat:
                out.append(
                    (
                        tf.name,
                        (k + 1) * span,
                        previous,
                        previous,
                        previous,
                        previous,
                        0,
                        0,
                        0,
                        None,
                        None,
                        None,
                    )
                )
            k += 1
    return out


def by_tf(candles: tuple[Candle, ...] | list[Candle], tf: Timeframe) -> list[Row]:
    return [row(c) for c in candles if c.timeframe == tf.name]


ALL = (TF_1M, TF_5M, TF_15M, TF_1H, TF_4H, TF_1D)


# ---------------------------------------------------------------- real tapes against exchange candles


@cache
def xrp_replay() -> Emitted:
    trades = tape_trades(XRP)
    return run(SeriesWindows("okx", "XRP-ETH", GRACE), trades, trades[-1].ts_event)


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


# ---------------------------------------------------------------- generated streams

rows = st.lists(
    st.tuples(
        st.one_of(
            st.integers(0, 8 * MIN),
            st.sampled_from(
                [0, 1, MIN - 1, MIN, MIN + 2_000, 2 * MIN, 2 * MIN + 2_000, 5 * MIN - 1, 5 * MIN]
            ),
        ),
        st.sampled_from(["99.5", "100", "100.25", "101", "98.75"]),
    ),
    min_size=1,
    max_size=50,
)


def make_trades(data: list[tuple[int, str]], rnd: random.Random) -> list[Trade]:
    """Trades sorted by time, with unique ids not in time order (ties on ts_event break by id)."""
    ids = rnd.sample(range(1, 100_000), len(data))
    return sorted(
        (trade(ms, p, tid) for (ms, p), tid in zip(data, ids, strict=True)), key=lambda t: t.ts_event
    )


def shuffle_within(trades: list[Trade], grace: timedelta, rnd: random.Random) -> list[Trade]:
    """Arrival order: each trade delayed by a random amount under the grace, so none arrives late."""
    g = int(grace / timedelta(milliseconds=1))
    keyed = [(ms_from_utc(t.ts_event) + rnd.randrange(g), i, t) for i, t in enumerate(trades)]
    return [t for _, _, t in sorted(keyed, key=lambda x: (x[0], x[1]))]


def test_trade_at_boundary_opens_next_candle() -> None:
    """Rule 1: the trade at exactly 12:01:00.000 is the open of [12:01, 12:02)."""
    windows = SeriesWindows("okx", "BTC-USDT", GRACE, timeframes=(TF_1M,))
    out = run(windows, [trade(30_000, "1", 1), trade(MIN, "2", 2), trade(MIN + 1, "3", 3)], at(2 * MIN))
    assert [(r[1], r[2], r[5], r[8]) for r in by_tf(out.candles, TF_1M)] == [
        (T0_MS + MIN, Decimal(1), Decimal(1), 1),
        (T0_MS + 2 * MIN, Decimal(2), Decimal(3), 2),
    ]


@settings(max_examples=150, deadline=None)
@given(rows, st.randoms(use_true_random=False))
def test_shuffled_within_grace_gives_the_candles_of_the_sorted_trades(
    data: list[tuple[int, str]], rnd: random.Random
) -> None:
    """Rule 1: arrival order within the grace changes nothing; rules 5-6: flat minutes and rollups."""
    trades = make_trades(data, rnd)
    end = at(10 * MIN)
    out = run(SeriesWindows("okx", "BTC-USDT", GRACE), shuffle_within(trades, GRACE, rnd), end)
    assert out.late == () and out.duplicates == 0
    for tf in (TF_1M, TF_5M):
        assert by_tf(out.candles, tf) == reference(trades, tf, T0_MS + 10 * MIN)


@settings(max_examples=100, deadline=None)
@given(rows, st.randoms(use_true_random=False), st.sampled_from([0, 500, 2_000, 90_000]))
def test_emitted_once_exactly_when_the_watermark_passes_the_close(
    data: list[tuple[int, str]], rnd: random.Random, grace_ms: int
) -> None:
    """Rule 3: after each trade, the emitted 1m candles are exactly those closing <= max ts_event - grace."""
    grace = timedelta(milliseconds=grace_ms)
    trades = make_trades(data, rnd)
    arrival = shuffle_within(trades, grace, rnd) if grace_ms else trades
    windows = SeriesWindows("okx", "BTC-USDT", grace, timeframes=(TF_1M,))
    emitted: list[Row] = []
    newest = -(10**18)
    full = reference(trades, TF_1M, T0_MS + 100 * MIN)
    for t in arrival:
        emitted += by_tf(windows.on_trade(t).candles, TF_1M)
        newest = max(newest, ms_from_utc(t.ts_event))
        assert emitted == [r for r in full if r[1] <= newest - grace_ms]  # type: ignore[operator]
    assert len({r[1] for r in emitted}) == len(emitted)


def test_emission_and_lateness_exactly_at_the_close() -> None:
    """Rule 3: [12:00, 12:01) is emitted when the watermark reaches 12:01:00.000, not a millisecond before;
    rule 4: from then on a trade at 12:00:59.999 is late."""
    windows = SeriesWindows("okx", "BTC-USDT", GRACE, timeframes=(TF_1M,))
    windows.on_trade(trade(59_999, "100", 1))
    assert windows.on_trade(trade(MIN + 1_999, "101", 2)) == Emitted()  # watermark 12:00:59.999
    assert windows.on_trade(trade(59_998, "99", 3)) == Emitted()  # still on time, folded in
    out = windows.on_trade(trade(MIN + 2_000, "102", 4))  # watermark 12:01:00.000
    expected = reference([trade(59_999, "100", 1), trade(59_998, "99", 3)], TF_1M, T0_MS + MIN)
    assert by_tf(out.candles, TF_1M) == expected
    late = windows.on_trade(trade(59_999, "98", 5))
    assert late.candles == () and [x.trade.trade_id for x in late.late] == [5]
    assert windows.open_windows == 1


def test_late_trade_is_returned_and_changes_nothing() -> None:
    """Rule 4 (worked example): [12:00, 12:01) is emitted at watermark 12:01:03; a 12:00:50 trade is late."""
    windows = SeriesWindows("okx", "BTC-USDT", GRACE, timeframes=(TF_1M, TF_5M))
    first = windows.on_trade(trade(10_000, "100", 1))
    assert not first
    out = windows.on_trade(trade(MIN + 5_000, "105", 2))
    assert by_tf(out.candles, TF_1M) == reference([trade(10_000, "100", 1)], TF_1M, T0_MS + MIN)
    late = windows.on_trade(trade(50_000, "90", 3))
    assert late.candles == () and len(late.late) == 1
    (record,) = late.late
    assert record.trade.trade_id == 3 and record.candle_close == at(MIN)
    assert record.watermark == at(MIN + 3_000) and record.lateness == timedelta(seconds=13)
    rest = windows.finish(at(5 * MIN))
    assert by_tf(rest.candles, TF_5M) == reference(
        [trade(10_000, "100", 1), trade(MIN + 5_000, "105", 2)], TF_5M, T0_MS + 5 * MIN
    )
    assert windows.on_trade(trade(50_000, "90", 3)).duplicates == 1  # a repeat of a late trade: a duplicate


@settings(max_examples=100, deadline=None)
@given(
    rows,
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 4 * MIN)), max_size=8),
    st.randoms(use_true_random=False),
)
def test_late_trades_never_change_candles(
    data: list[tuple[int, str]], stragglers: list[tuple[int, int]], rnd: random.Random
) -> None:
    """Rule 4: late = its 1m window closed at arrival (close <= newest ts_event - grace, computed here)."""
    trades = make_trades(data, rnd)
    arrival = list(trades)
    for position, behind in stragglers:  # a straggler arrives `behind` ms before the newest trade so far
        i = min(position, len(arrival))
        newest = max((ms_from_utc(t.ts_event) for t in arrival[:i]), default=0) - T0_MS
        arrival.insert(i, trade(max(newest - behind, 0), "77", 200_000 + len(arrival)))
    newest_ms: int | None = None
    on_time: list[Trade] = []
    expected_late = []
    for t in arrival:
        ms = ms_from_utc(t.ts_event)
        if newest_ms is not None and (ms // MIN + 1) * MIN <= newest_ms - 2_000:
            expected_late.append((t.trade_id, (ms // MIN + 1) * MIN, newest_ms - 2_000 - ms))
        else:
            on_time.append(t)
            newest_ms = ms if newest_ms is None else max(newest_ms, ms)
    out = run(SeriesWindows("okx", "BTC-USDT", GRACE), arrival, at(10 * MIN))
    got_late = [
        (x.trade.trade_id, ms_from_utc(x.candle_close), x.lateness // timedelta(milliseconds=1))
        for x in out.late
    ]
    assert got_late == expected_late
    for tf in (TF_1M, TF_5M):
        assert by_tf(out.candles, tf) == reference(on_time, tf, T0_MS + 10 * MIN)


def test_quiet_instrument_gets_flat_candles_on_time() -> None:
    """Rule 5: the watermark advances with no trades; flat candles carry the previous close."""
    windows = SeriesWindows("okx", "BTC-USDT", GRACE, timeframes=(TF_1M, TF_5M))
    assert windows.advance(at(0)) == Emitted()  # before the first trade: nothing to carry, nothing emitted
    windows.on_trade(trade(10_000, "100", 1))
    windows.on_trade(trade(20_000, "101", 2))
    out = windows.advance(at(3 * MIN + 500))
    flat = (Decimal(101),) * 4 + (0, 0, 0, None, None, None)
    assert by_tf(out.candles, TF_1M) == [
        reference([trade(10_000, "100", 1), trade(20_000, "101", 2)], TF_1M, T0_MS + MIN)[0],
        ("1m", T0_MS + 2 * MIN, *flat),
        ("1m", T0_MS + 3 * MIN, *flat),
    ]
    assert windows.advance(at(3 * MIN + 59_999)) == Emitted()
    out = windows.advance(at(10 * MIN))
    assert [(r[0], r[1]) for r in map(row, out.candles)] == [
        ("1m", T0_MS + 4 * MIN), ("1m", T0_MS + 5 * MIN), ("5m", T0_MS + 5 * MIN),
        *(("1m", T0_MS + m * MIN) for m in range(6, 11)), ("5m", T0_MS + 10 * MIN),
    ]  # fmt: skip
    assert row(out.candles[-1])[2:] == flat  # an all-flat 5m is flat at the previous close


def test_nothing_before_the_first_trade() -> None:
    windows = SeriesWindows("okx", "BTC-USDT", GRACE)
    out = run(windows, [trade(3 * MIN + 10_000, "5", 1)], at(6 * MIN))
    assert [(r[0], r[1]) for r in by_tf(out.candles, TF_1M)] == [("1m", T0_MS + m * MIN) for m in (4, 5, 6)]
    assert [(r[0], r[1], r[8]) for r in by_tf(out.candles, TF_5M)] == [("5m", T0_MS + 5 * MIN, 1)]


def test_emit_flat_false_leaves_holes() -> None:
    trades = [trade(10_000, "100", 1), trade(7 * MIN + 10, "99", 2)]
    windows = SeriesWindows("okx", "BTC-USDT", GRACE, emit_flat=False)
    out = run(windows, trades, at(24 * 60 * MIN))
    for tf in ALL:
        assert by_tf(out.candles, tf) == reference(trades, tf, T0_MS + 24 * 60 * MIN, flat=False)
    assert [c.timeframe for c in out.candles] == ["1m", "5m", "1m", "5m", "15m", "1h", "4h", "1d"]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2_400 * MIN))
def test_prefix_invariance_on_the_xrp_tape(cut_offset: int) -> None:
    """Rule 8: candles stamped <= C are identical whether the tape stops at C or continues."""
    trades = tape_trades(XRP)
    cut = trades[0].ts_event + timedelta(milliseconds=cut_offset)
    prefix = [t for t in trades if t.ts_event <= cut]
    got = run(SeriesWindows("okx", "XRP-ETH", GRACE), prefix, cut).candles
    assert got == tuple(c for c in xrp_replay().candles if c.close_time <= cut)
    assert all(c.close_time <= cut for c in got)  # rule 9


@settings(max_examples=100, deadline=None)
@given(rows, st.randoms(use_true_random=False), st.integers(0, 9 * MIN))
def test_prefix_invariance_with_shuffled_arrival(
    data: list[tuple[int, str]], rnd: random.Random, cut_ms: int
) -> None:
    trades = make_trades(data, rnd)
    arrival = shuffle_within(trades, GRACE, rnd)
    full = run(SeriesWindows("okx", "BTC-USDT", GRACE), arrival, at(20 * MIN)).candles
    cut = at(cut_ms)
    prefix = run(
        SeriesWindows("okx", "BTC-USDT", GRACE), [t for t in arrival if t.ts_event <= cut], cut
    ).candles
    assert prefix == tuple(c for c in full if c.close_time <= cut)
    assert by_tf(prefix, TF_1M) == reference(trades, TF_1M, T0_MS + cut_ms)


def test_finish_emits_up_to_the_end_and_nothing_after() -> None:
    """Rule 9: windows closing after the end are incomplete; a window closing exactly at it is complete."""
    trades = [trade(10_000, "1", 1), trade(MIN + 10_000, "2", 2), trade(2 * MIN + 10_000, "3", 3)]
    out = run(SeriesWindows("okx", "BTC-USDT", GRACE), trades, at(2 * MIN))
    assert [r[1] for r in map(row, out.candles)] == [T0_MS + MIN, T0_MS + 2 * MIN]
    windows = SeriesWindows("okx", "BTC-USDT", GRACE)
    run(windows, trades, None)
    with pytest.raises(ValueError):
        windows.finish(at(MIN))  # [12:01, 12:02) was already emitted: cannot end at 12:01


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
