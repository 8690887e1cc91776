"""The pure sequencer, without a socket: hypothesis shuffles, duplicates, drops and poisons pushes.

The oracle is a model exchange in this file: consecutive trade ids with increasing times; REST answers
only trades whose time has passed. Every clean trade must leave exactly once, in id order, and nothing
else may leave as a trade; poison never moves the position; feed states never claim more than was
emitted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from market.sequencing import (
    Action,
    Backfilled,
    Disconnected,
    Event,
    FetchBackfill,
    FetchLatest,
    Gap,
    Heard,
    Latest,
    Limits,
    Push,
    Sequencer,
    Start,
    Subscribed,
    Tick,
    Unreadable,
)
from market.types import FeedState, Rejected, Trade, ms_from_utc

T0 = datetime(2024, 1, 1, 12, tzinfo=UTC)
SYM = "BTC-USDT"
FIRST_ID = 5_000_001
STEP = timedelta(milliseconds=100)
DELAY = timedelta(milliseconds=40)


def market(n: int, symbol: str = SYM) -> list[Trade]:
    """The exchange's trades: ids FIRST_ID.., one every STEP from T0."""
    return [
        Trade(
            "okx",
            symbol,
            FIRST_ID + i,
            Decimal(100 + i % 7),
            Decimal("0.5"),
            "buy" if i % 2 else "sell",
            T0 + i * STEP,
        )
        for i in range(n)
    ]


class Exchange:
    """Answers the sequencer's requests from the trades whose time has passed; counts the requests."""

    def __init__(self, trades: list[Trade], rest_up: bool = True) -> None:
        self.trades = trades
        self.rest_up = rest_up
        self.latest_requests = 0
        self.backfill_requests: list[FetchBackfill] = []

    def known(self, now: datetime) -> list[Trade]:
        return [t for t in self.trades if t.ts_event <= now]

    def answer(self, request: FetchLatest | FetchBackfill, now: datetime) -> Event:
        if isinstance(request, FetchLatest):
            self.latest_requests += 1
            if not self.rest_up:
                return Latest(request.symbol, (), "ConnectionRefusedError", now)
            newest = [replace(t, ts_recv=now, origin="rest") for t in self.known(now)[-5:]]
            return Latest(request.symbol, tuple(reversed(newest)), None, now)
        self.backfill_requests.append(request)
        if not self.rest_up:
            return Backfilled(request, (), (), "ConnectionRefusedError", now)
        inside = tuple(
            replace(t, ts_recv=now, origin="rest")
            for t in self.known(now)
            if request.after_id < t.trade_id < request.until_id
        )
        return Backfilled(request, inside, (), None, now)


class Driver:
    """Runs a sequencer like the socket loop does: ticks when it asks, answers its requests at once."""

    def __init__(self, sequencer: Sequencer, exchange: Exchange) -> None:
        self.sequencer = sequencer
        self.exchange = exchange
        self.out: list[Action] = []
        self.highest_real = max(t.trade_id for t in exchange.trades)

    def feed(self, event: Event, at: datetime) -> None:
        while (wake := self.sequencer.next_wakeup()) is not None and wake <= at:
            self._run(Tick(wake), wake)
        self._run(event, at)

    def _run(self, event: Event, now: datetime) -> None:
        pending = deque(self.sequencer.feed(event))
        while pending:
            action = pending.popleft()
            if isinstance(action, FetchLatest | FetchBackfill):
                pending.extend(self.sequencer.feed(self.exchange.answer(action, now)))
            else:
                self.out.append(action)
        for last_id, _ in self.sequencer.positions.values():
            assert last_id <= self.highest_real, "poison moved a position"

    def settle(self, at: datetime) -> datetime:
        """Tick until nothing is due (at most a minute)."""
        end = at + timedelta(minutes=1)
        while (wake := self.sequencer.next_wakeup()) is not None and wake <= end:
            at = max(at, wake)
            self._run(Tick(at), at)
        return at

    def of(self, kind: type) -> list:
        return [a for a in self.out if isinstance(a, kind)]


def push_of(trades: list[Trade], at: datetime, raw: bytes = b"{}") -> Push:
    return Push(tuple(replace(t, ts_recv=at) for t in trades), raw, at)


def started(trades: list[Trade], *, start_before: int | None = 0, rest_up: bool = True) -> Driver:
    """A driver whose instrument starts after ``trades[start_before - 1]`` (None: no position)."""
    positions = {}
    if start_before is not None:
        before = FIRST_ID + start_before - 1
        positions[SYM] = (before, ms_from_utc(T0 + (start_before - 1) * STEP))
    driver = Driver(
        Sequencer("okx", [SYM], positions=positions, push_source="okx-ws", rest_source="okx-rest"),
        Exchange(trades, rest_up),
    )
    driver.feed(Start(T0 - timedelta(seconds=1)), T0 - timedelta(seconds=1))
    driver.feed(Subscribed(SYM, T0), T0)
    return driver


# ----------------------------------------------------------------------------- invariants


def assert_exactly_once(driver: Driver, expected: list[Trade]) -> list[Trade]:
    emitted: list[Trade] = driver.of(Trade)
    assert [t.trade_id for t in emitted] == [t.trade_id for t in expected]
    for got, want in zip(emitted, expected, strict=True):
        assert (got.price, got.size, got.side) == (want.price, want.size, want.side)
        assert got.ts_event == want.ts_event
    return emitted


def assert_gaps_precede_their_trades(driver: Driver) -> None:
    last_gap: Gap | None = None
    for item in driver.out:
        if isinstance(item, Gap):
            last_gap = item
        elif isinstance(item, Trade) and item.origin == "rest":
            assert last_gap is not None and last_gap.from_trade_id < item.trade_id < last_gap.to_trade_id


def assert_feed_states_honest(driver: Driver, received: dict[int, datetime]) -> None:
    """A live FeedState at ``heard_at`` H comes after every trade whose push was received by H."""
    emitted_max = 0
    for item in driver.out:
        if isinstance(item, Trade):
            emitted_max = max(emitted_max, item.trade_id)
        elif isinstance(item, FeedState) and item.live:
            due = [i for i, at in received.items() if at <= item.heard_at]
            assert not due or max(due) <= emitted_max, (item, max(due), emitted_max)


# ----------------------------------------------------------------------------- properties

schedules = st.lists(
    st.sampled_from(["send", "send", "send", "drop", "duplicate", "swap"]), min_size=3, max_size=60
)


@settings(max_examples=200, deadline=None)
@given(schedule=schedules, tick_gap=st.integers(0, 3))
def test_drops_duplicates_and_reorders_leave_each_trade_once_in_order(
    schedule: list[str], tick_gap: int
) -> None:
    trades = market(len(schedule))
    driver = started(trades)
    arrivals: list[int] = []
    for index, op in enumerate(schedule):
        if op == "drop":
            continue
        arrivals.append(index)
        if op == "duplicate":
            arrivals.append(index)
        elif op == "swap" and len(arrivals) >= 2:
            arrivals[-1], arrivals[-2] = arrivals[-2], arrivals[-1]
    received: dict[int, datetime] = {}
    at = T0
    for slot, index in enumerate(arrivals):
        at = max(at, trades[index].ts_event + DELAY + slot * timedelta(milliseconds=tick_gap))
        received.setdefault(trades[index].trade_id, at)
        driver.feed(push_of([trades[index]], at), at)
    at = driver.settle(at + timedelta(seconds=1))
    driver.feed(Disconnected(at, "connection lost: test"), at)  # what trailing drops leave is found
    driver.feed(Subscribed(SYM, at + timedelta(seconds=1)), at + timedelta(seconds=1))
    driver.settle(at + timedelta(seconds=1))
    assert_exactly_once(driver, trades)
    assert driver.of(Rejected) == []
    assert_gaps_precede_their_trades(driver)
    assert_feed_states_honest(driver, received)
    assert all(g.filled for g in driver.of(Gap))
    states = driver.of(FeedState)
    assert states[0].live is False and states[-1].live is True


POISON = ["future", "behind", "ahead", "foreign", "price", "count", "many"]
ALWAYS_REJECTED = {"ahead", "foreign", "price", "count", "many"}


def poison(kind: str, upcoming: Trade, at: datetime) -> Push:
    if kind == "future":
        bad = [replace(upcoming, ts_event=at + timedelta(hours=1))]
    elif kind == "behind":
        bad = [replace(upcoming, ts_event=at - timedelta(hours=1))]
    elif kind == "ahead":
        bad = [replace(upcoming, trade_id=upcoming.trade_id + 10**12)]
    elif kind == "foreign":
        bad = [replace(upcoming, symbol="ETH-USDT")]
    elif kind == "price":
        bad = [replace(upcoming, price=Decimal("9" * 400))]
    elif kind == "count":
        bad = [replace(upcoming, count=2**31)]
    else:
        bad = [upcoming] * 1001
    return push_of(bad, at, raw=f'{{"poison":"{kind}"}}'.encode())


@settings(max_examples=200, deadline=None)
@given(n=st.integers(3, 40), data=st.data(), fresh=st.booleans())
def test_poison_is_rejected_and_never_moves_the_position(n: int, data: st.DataObject, fresh: bool) -> None:
    trades = market(n)
    inserts = data.draw(st.lists(st.tuples(st.integers(0, n), st.sampled_from(POISON)), max_size=8))
    driver = started(trades, start_before=None if fresh else 0)
    at = T0
    for index in range(n + 1):
        for kind in [k for i, k in inserts if i == index]:
            at += timedelta(milliseconds=1)
            driver.feed(poison(kind, trades[min(index, n - 1)], at), at)
        if index < n:
            at = max(at, trades[index].ts_event + DELAY)
            driver.feed(push_of([trades[index]], at), at)
    at = driver.settle(at + timedelta(seconds=1))
    driver.feed(Disconnected(at, "connection lost: test"), at)
    driver.feed(Subscribed(SYM, at + timedelta(seconds=1)), at + timedelta(seconds=1))
    driver.settle(at + timedelta(seconds=1))
    rejected: list[Rejected] = driver.of(Rejected)
    assert all(r.raw.startswith(b'{"poison"') and r.source == "okx-ws" for r in rejected)
    always = sum(kind in ALWAYS_REJECTED for _, kind in inserts)
    assert always <= len(rejected) <= len(inserts)
    if fresh:  # the start is after the newest trade REST knew when the instrument subscribed
        first = driver.of(Trade)[0].trade_id if driver.of(Trade) else FIRST_ID + n
        assert_exactly_once(driver, [t for t in trades if t.trade_id >= first])
    else:
        assert_exactly_once(driver, trades)
    assert_gaps_precede_their_trades(driver)


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
    assert min(spacing) >= timedelta(milliseconds=200)
    assert live[-1].heard_at == quiet + timedelta(seconds=3)


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
