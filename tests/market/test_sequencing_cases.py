"""The pure sequencer in focused cases: forged first trades, backfills outside the hole, lost connections,
REST down, throttled feed states, unreadable frames, stalls and the bound on held pushes, against the
model exchange of tests/market/sequencing_kit.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from market.sequencing import (
    Backfilled,
    Disconnected,
    FetchBackfill,
    FetchLatest,
    Gap,
    Heard,
    Latest,
    Limits,
    Sequencer,
    Start,
    Subscribed,
    Tick,
    Unreadable,
)
from market.types import FeedState, Rejected, Trade, ms_from_utc
from market.watermark import Watermark
from tests.market.sequencing_kit import (
    DELAY,
    FIRST_ID,
    STEP,
    SYM,
    T0,
    Driver,
    Exchange,
    market,
    push_of,
    started,
)

# ----------------------------------------------------------------------------- focused cases


def test_a_forged_first_trade_cannot_capture_the_start() -> None:
    trades = market(20)
    driver = started(trades, start_before=None)
    at = T0 + 5 * STEP
    driver.feed(push_of([replace(trades[4], trade_id=10**12)], at), at)
    for trade in trades[5:]:
        driver.feed(push_of([trade], trade.ts_event + DELAY), trade.ts_event + DELAY)
    (rejected,) = driver.of(Rejected)
    assert "trade id 1000000000000 is" in rejected.reason and "ahead of the last trade" in rejected.reason
    # REST's newest trade at subscription was trades[0] (the only one played by T0): start after it.
    assert [t.trade_id for t in driver.of(Trade)] == [t.trade_id for t in trades[1:]]
    assert [t.origin for t in driver.of(Trade)[:4]] == ["rest"] * 4  # the hole before the first push
    assert driver.exchange.latest_requests == 1


def test_without_rest_a_forged_first_trade_still_cannot_start_the_sequence() -> None:
    trades = market(10)
    driver = started(trades, start_before=None, rest_up=False)
    forged = replace(trades[0], trade_id=10**12)
    driver.feed(push_of([forged], T0 + DELAY), T0 + DELAY)
    assert driver.of(Trade) == []
    for trade in trades[1:]:
        driver.feed(push_of([trade], trade.ts_event + DELAY), trade.ts_event + DELAY)
    assert [t.trade_id for t in driver.of(Trade)] == [t.trade_id for t in trades[1:]]
    assert len(driver.of(Rejected)) == 1 and "ahead of the last trade" in driver.of(Rejected)[0].reason
    states: list[FeedState] = driver.of(FeedState)
    assert ("waiting for a verified first trade" in {s.reason for s in states}) and states[-1].live


def test_backfilled_trades_outside_the_hole_are_rejected_and_the_gap_is_unfilled() -> None:
    trades = market(10)
    sequencer = Sequencer(
        "okx",
        [SYM],
        positions={SYM: (FIRST_ID, ms_from_utc(T0))},
        push_source="okx-ws",
        rest_source="okx-rest",
    )
    now = T0 + 10 * STEP
    sequencer.feed(Start(now))
    (ask,) = sequencer.feed(Subscribed(SYM, now))[:1]
    assert ask == FetchLatest(SYM)
    newest = replace(trades[6], ts_recv=now, origin="rest")
    out = sequencer.feed(Latest(SYM, (newest,), None, now))
    assert out == [
        FetchBackfill(SYM, FIRST_ID, trades[6].trade_id + 1),
        FeedState("okx", SYM, False, now, "backfilling missing trades from REST"),
    ]
    inside = [replace(t, ts_recv=now, origin="rest") for t in trades[1:7]]
    inside[2] = replace(inside[2], ts_event=T0 - timedelta(hours=1))  # id inside, time outside
    stray = replace(trades[9], ts_recv=now, origin="rest")  # an id outside the hole
    out = sequencer.feed(Backfilled(out[0], tuple(inside), (stray,), None, now))
    kinds = [type(a).__name__ for a in out]
    assert kinds == ["Rejected", "Rejected", "Gap", "Trade", "Trade", "Trade", "Trade", "Trade", "FeedState"]
    outside, late = out[0], out[1]
    assert isinstance(outside, Rejected) and "outside the ids asked for" in outside.reason
    assert isinstance(late, Rejected) and "outside the hole" in late.reason and late.source == "okx-rest"
    gap = out[2]
    assert isinstance(gap, Gap) and (gap.filled, gap.trades_backfilled, gap.reason) == (False, 5, "resume")
    assert [t.trade_id for t in out[3:8]] == [FIRST_ID + i for i in (1, 2, 4, 5, 6)]
    assert out[8] == FeedState("okx", SYM, True, now)


def test_a_lost_connection_is_not_live_until_the_hole_is_backfilled() -> None:
    trades = market(30)
    driver = started(trades)
    for trade in trades[:10]:
        driver.feed(push_of([trade], trade.ts_event + DELAY), trade.ts_event + DELAY)
    lost = trades[10].ts_event
    driver.feed(Tick(lost), lost)
    mark = len(driver.out)
    driver.feed(Disconnected(lost, "connection lost: reset"), lost)
    back = trades[20].ts_event + DELAY
    driver.feed(Subscribed(SYM, back), back)
    after = driver.out[mark:]
    assert isinstance(after[0], FeedState) and not after[0].live
    assert after[0].reason == "connection lost: reset"
    gap_at = next(i for i, a in enumerate(after) if isinstance(a, Gap))
    live_at = next(i for i, a in enumerate(after) if isinstance(a, FeedState) and a.live)
    assert gap_at < live_at
    gap = after[gap_at]
    assert isinstance(gap, Gap)
    assert (gap.reason, gap.filled, gap.from_trade_id, gap.to_trade_id) == (
        "reconnect",
        True,
        trades[9].trade_id,
        trades[20].trade_id + 1,
    )
    assert gap.recovery_seconds == (back - lost).total_seconds()
    assert [t.trade_id for t in after if isinstance(t, Trade)] == [t.trade_id for t in trades[10:21]]


def test_rest_down_records_an_unfilled_gap_and_goes_live_anyway() -> None:
    trades = market(30)
    driver = started(trades)
    for trade in trades[:5]:
        driver.feed(push_of([trade], trade.ts_event + DELAY), trade.ts_event + DELAY)
    driver.exchange.rest_up = False
    at = trades[12].ts_event + DELAY
    driver.feed(push_of([trades[12]], at), at)
    driver.settle(at)
    gaps = [g for g in driver.of(Gap) if g.reason == "sequence"]
    assert [(g.filled, g.from_trade_id, g.to_trade_id, g.error) for g in gaps] == [
        (False, trades[4].trade_id, trades[12].trade_id, "ConnectionRefusedError")
    ]
    assert driver.out.index(gaps[0]) < driver.out.index(driver.of(Trade)[-1])
    assert driver.of(Trade)[-1].trade_id == trades[12].trade_id
    assert driver.of(FeedState)[-1].live


def test_feed_states_are_throttled_and_follow_pongs() -> None:
    trades = market(40)
    driver = started(trades)
    for trade in trades:
        driver.feed(push_of([trade], trade.ts_event + DELAY), trade.ts_event + DELAY)
    quiet = trades[-1].ts_event + DELAY
    for second in range(1, 4):  # a quiet but healthy connection: pongs keep it live
        driver.feed(Heard(quiet + timedelta(seconds=second)), quiet + timedelta(seconds=second))
    live = [s for s in driver.of(FeedState) if s.live]
    assert all(b.heard_at > a.heard_at for a, b in zip(live, live[1:], strict=False))
    spacing = [b.heard_at - a.heard_at for a, b in zip(live, live[1:], strict=False)]
    assert min(spacing) >= Limits().feed_interval
    assert live[-1].heard_at == quiet + timedelta(seconds=3)


def test_a_quiet_instrument_on_a_busy_connection_hears_within_25_ms() -> None:
    """Its candles close on ``heard_at`` (no trade of its own comes), so how stale the feed's clock may
    get is how late after close plus grace they close: at most 25 ms plus the spacing of the frames."""
    trades = market(3)
    driver = started(trades)
    for trade in trades:
        driver.feed(push_of([trade], trade.ts_event + DELAY), trade.ts_event + DELAY)
    start = trades[-1].ts_event + DELAY
    spacing = timedelta(milliseconds=3)
    frames = [start + i * spacing for i in range(1, 700)]  # other instruments' pushes
    for at in frames:
        driver.feed(Heard(at), at)
        reported = [s.heard_at for s in driver.of(FeedState) if s.live]
        assert at - reported[-1] <= timedelta(milliseconds=25) + spacing, (at, reported[-1])
    live = [s.heard_at for s in driver.of(FeedState) if s.live]
    assert set(live) <= {T0} | {t.ts_event + DELAY for t in trades} | set(frames)  # only frames heard
    during = [at for at in live if at > start]
    assert len(during) <= (frames[-1] - start) / Limits().feed_interval + 1  # no more often than that


def test_a_quiet_instrument_hears_at_once_the_frame_that_lets_its_candle_close() -> None:
    """With the flow's grace known, the first frame that takes a quiet instrument's watermark past a
    minute's close is reported at once, not up to ``feed_interval`` later; the throttle holds between."""
    grace = timedelta(seconds=2)
    trades = market(3)
    frames = [trades[-1].ts_event + DELAY + i * timedelta(milliseconds=7) for i in range(1, 10_000)]
    # The watermark at a frame, written out (market.watermark): newest trade time - grace + time since.
    newest, seen = trades[-1].ts_event, trades[-1].ts_event + DELAY
    close = T0 + timedelta(minutes=1)
    first = min(at for at in frames if newest - grace + (at - seen) >= close)
    reported: dict[Limits, list] = {}
    for limits in (Limits(close_grace=grace), Limits()):
        driver = started(trades, limits=limits)
        for trade in trades:
            driver.feed(push_of([trade], trade.ts_event + DELAY), trade.ts_event + DELAY)
        for at in frames:
            driver.feed(Heard(at), at)
        live = [s.heard_at for s in driver.of(FeedState) if s.live]
        clock = Watermark(grace)
        for trade in driver.of(Trade):
            clock.observe(trade.ts_event, trade.ts_recv)
        for heard, closes in ((first, True), (first - timedelta(milliseconds=7), False)):
            clock.on_feed(FeedState("okx", SYM, True, heard))  # the oracle agrees with the clock
            assert (clock.at(heard) >= close) is closes  # type: ignore[operator]
        reported[limits] = live
    assert first in reported[Limits(close_grace=grace)]
    assert first not in reported[Limits()]  # the throttle alone reports a later frame


def test_an_unreadable_frame_holds_heard_at_until_a_push_or_rest_shows_nothing_missing() -> None:
    trades = market(20)
    driver = started(trades)
    for trade in trades[:5]:
        driver.feed(push_of([trade], trade.ts_event + DELAY), trade.ts_event + DELAY)
    before = trades[4].ts_event + DELAY
    bad = before + timedelta(milliseconds=300)
    driver.feed(Unreadable(b"\x00not json", "malformed JSON", bad), bad)
    for tenth in (1, 2):
        pong = bad + timedelta(milliseconds=100 * tenth)
        driver.feed(Heard(pong), pong)
    live = [s for s in driver.of(FeedState) if s.live]
    assert live[-1].heard_at <= before
    driver.settle(bad)  # no push within the reorder window: REST confirms nothing is missing
    assert driver.exchange.latest_requests == 2
    assert driver.of(FeedState)[-1].live and driver.of(FeedState)[-1].heard_at > bad
    assert driver.of(Rejected)[0].reason == "malformed JSON"


def test_stall_measures_pushes_that_are_never_accepted() -> None:
    trades = market(10)
    sequencer = Sequencer("okx", [SYM], positions={SYM: (FIRST_ID + 100, ms_from_utc(T0))})
    sequencer.feed(Start(T0))
    sequencer.feed(Subscribed(SYM, T0))
    sequencer.feed(Latest(SYM, (), "down", T0))
    for trade in trades:  # every push is below the position: duplicates
        at = trade.ts_event + DELAY
        sequencer.feed(push_of([trade], at))
    assert sequencer.stall() == ((trades[-1].ts_event - trades[0].ts_event).total_seconds(), SYM)
    assert sequencer.duplicates == 10


def test_held_pushes_stay_bounded_while_nothing_can_be_verified() -> None:
    trades = market(200)
    sequencer = Sequencer("okx", [SYM], Limits(reorder_max=5))
    driver = Driver(sequencer, Exchange(trades, rest_up=False))
    driver.feed(Start(T0), T0)
    driver.feed(Subscribed(SYM, T0), T0)
    for trade in trades[::2]:  # every other trade: no push continues another, so no start is verified
        at = trade.ts_event + DELAY
        driver.feed(push_of([trade], at), at)
        assert len(sequencer._lanes[SYM].held) <= 10
    assert driver.of(Trade) == [] and driver.exchange.latest_requests > 10
    driver.exchange.rest_up = True
    at = trades[-1].ts_event + timedelta(seconds=2)
    driver.feed(Tick(at), at)  # the next retry anchors the start at REST's newest trade
    assert sequencer.positions[SYM][0] == trades[-1].trade_id
