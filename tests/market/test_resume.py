"""Resuming a series from what was stored gives exactly the candles of an uninterrupted run; holes
mark candles incomplete; the live clock waits while the feed is not live.

Oracle: the same pure windows run without interruption over the same trades (whose candles equal the
exchange's klines, tests/market/test_windowing.py). The stored state at a cut is rebuilt the way the
database would hold it: the final 1m candles emitted so far and the accepted trades.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from market.types import Candle, FeedState, Trade
from market.watermark import Watermark
from market.windowing import ResumePoint, SeriesWindows
from tests.market.windowing_kit import XRP
from tests.support.tapes import tape_trades as tape

GRACE = timedelta(seconds=2)
DAY = timedelta(days=1)


def run(trades: tuple[Trade, ...]) -> tuple[list[Candle], SeriesWindows]:
    windows = SeriesWindows("okx", "XRP-ETH", grace=GRACE)
    candles = list(windows.on_trades(trades).candles)
    return candles, windows


def stored_point(emitted: list[Candle], accepted: tuple[Trade, ...]) -> ResumePoint:
    """What the database holds after the trades ``accepted`` produced ``emitted``."""
    minutes = [c for c in emitted if c.timeframe == "1m"]
    last = minutes[-1]
    day_open = last.close_time - (last.close_time - datetime(1970, 1, 1, tzinfo=UTC)) % DAY
    period = tuple(c for c in minutes if day_open < c.close_time <= last.close_time)
    open_trades = tuple(t for t in accepted if t.ts_event >= last.close_time)
    return ResumePoint(last, period, open_trades)


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=2_000, max_value=12_000))
def test_resume_at_any_cut_continues_exactly_as_without_the_stop(cut: int) -> None:
    trades = tape(XRP)
    expected, _ = run(trades)
    before, _ = run(trades[:cut])
    point = stored_point(before, trades[:cut])
    resumed = SeriesWindows("okx", "XRP-ETH", grace=GRACE)
    after = list(resumed.resume(point).candles) + list(resumed.on_trades(trades[cut:]).candles)
    stored_to = point.last_candle.close_time
    # everything closing after the stored end, in every timeframe, is emitted exactly once and equal
    tail = [
        c for c in expected if c.close_time > stored_to or (c.close_time == stored_to and c not in before)
    ]
    assert after == tail
    assert {c.timeframe for c in after} >= {"1m", "5m", "1h"}


def test_resume_emits_the_candles_its_stored_open_trades_already_close() -> None:
    trades = tape(XRP)
    expected, _ = run(trades)
    cut = 5_000
    before, _ = run(trades[:cut])
    minutes = [c for c in before if c.timeframe == "1m"]
    # the database lost the last two 1m candles (the flow died before writing them), not their trades
    point = stored_point(minutes[:-2], trades[:cut])
    resumed = SeriesWindows("okx", "XRP-ETH", grace=GRACE)
    first = resumed.resume(point).candles
    assert [c for c in first if c.timeframe == "1m"] == minutes[-2:]
    rest = list(first) + list(resumed.on_trades(trades[cut:]).candles)
    assert [c for c in rest if c.timeframe == "1m"] == [
        c for c in expected if c.timeframe == "1m" and c.close_time > point.last_candle.close_time
    ]


def test_a_hole_marks_its_minutes_and_every_longer_candle_holding_them_incomplete() -> None:
    trades = tape(XRP)
    windows = SeriesWindows("okx", "XRP-ETH", grace=GRACE)
    first = datetime(2019, 10, 11, 0, 12, 30, tzinfo=UTC)
    last = datetime(2019, 10, 11, 0, 13, 10, tzinfo=UTC)
    windows.mark_incomplete(first, last)
    candles = list(windows.on_trades(trades).candles)
    flagged = {(c.timeframe, c.close_time) for c in candles if not c.complete}
    assert flagged == {
        ("1m", datetime(2019, 10, 11, 0, 13, tzinfo=UTC)),
        ("1m", datetime(2019, 10, 11, 0, 14, tzinfo=UTC)),
        ("5m", datetime(2019, 10, 11, 0, 15, tzinfo=UTC)),
        ("15m", datetime(2019, 10, 11, 0, 15, tzinfo=UTC)),
        ("1h", datetime(2019, 10, 11, 1, 0, tzinfo=UTC)),
        ("4h", datetime(2019, 10, 11, 4, 0, tzinfo=UTC)),
        ("1d", datetime(2019, 10, 12, 0, 0, tzinfo=UTC)),
    }
    # nothing else changed: the same candles as without the mark, but for the flag
    plain = SeriesWindows("okx", "XRP-ETH", grace=GRACE).on_trades(trades).candles
    assert [replace(c, complete=True) for c in candles] == list(plain)


def test_a_hole_over_flat_minutes_flags_the_flat_candles_too() -> None:
    t0 = datetime(2024, 1, 1, 12, 0, 10, tzinfo=UTC)

    def trade(tid: int, at: datetime) -> Trade:
        return Trade("okx", "BTC-USDT", tid, Decimal("100"), Decimal("1"), "buy", at)

    windows = SeriesWindows("okx", "BTC-USDT", grace=GRACE)
    windows.on_trade(trade(1, t0))
    windows.mark_incomplete(t0 + timedelta(minutes=1), t0 + timedelta(minutes=3))
    out = windows.on_trade(trade(2, t0 + timedelta(minutes=6))).candles
    one_minute = [(c.close_time.minute, c.trade_count, c.complete) for c in out if c.timeframe == "1m"]
    assert one_minute == [
        (1, 1, True),
        (2, 0, False),
        (3, 0, False),
        (4, 0, False),
        (5, 0, True),
        (6, 0, True),
    ]
    five = [c for c in out if c.timeframe == "5m"]
    assert len(five) == 1 and not five[0].complete


def test_the_live_clock_waits_while_the_feed_is_not_live_and_follows_the_feed_while_live() -> None:
    t0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    clock = Watermark(grace=GRACE)
    clock.observe(t0, t0)
    assert clock.at(t0 + timedelta(seconds=30)) == t0 - GRACE + timedelta(seconds=30)  # no feed states
    clock.on_feed(FeedState("okx", "BTC-USDT", False, t0 + timedelta(seconds=1), "reconnecting"))
    assert clock.at(t0 + timedelta(seconds=30)) is None
    clock.on_feed(FeedState("okx", "BTC-USDT", True, t0 + timedelta(seconds=10)))
    # while live, the feed's clock (the last frame heard) is the clock, whatever the local time says
    assert clock.at(t0 + timedelta(seconds=30)) == t0 - GRACE + timedelta(seconds=10)
    assert clock.at(t0 + timedelta(seconds=11)) == t0 - GRACE + timedelta(seconds=10)
