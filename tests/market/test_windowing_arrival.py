"""SeriesWindows on generated arrival orders (docs/time.md rules 1, 3-5, 8, 9): shuffled within the grace,
emitted exactly when the watermark passes the close, late trades, flat candles, prefix invariance and
the end of a replay, against ``reference`` (tests/market/windowing_kit.py).
"""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.timeframes import TF_1M, TF_5M
from market.types import Trade, ms_from_utc
from market.windowing import Emitted, SeriesWindows
from tests.market.windowing_kit import (
    ALL,
    GRACE,
    MIN,
    T0_MS,
    XRP,
    Row,
    at,
    by_tf,
    make_trades,
    reference,
    row,
    rows,
    run,
    shuffle_within,
    trade,
    xrp_replay,
)
from tests.support.tapes import tape_trades


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
