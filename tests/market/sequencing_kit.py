"""The oracle of the sequencer tests: a model exchange (consecutive trade ids with increasing times; REST
answers only trades whose time has passed), a driver that feeds the sequencer and answers its requests,
and the invariants every run must keep.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from market.sequencing import (
    Action,
    Backfilled,
    Event,
    FetchBackfill,
    FetchLatest,
    Gap,
    Latest,
    Limits,
    Push,
    Sequencer,
    Start,
    Subscribed,
    Tick,
)
from market.types import FeedState, Trade, ms_from_utc

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


def started(
    trades: list[Trade], *, start_before: int | None = 0, rest_up: bool = True, limits: Limits | None = None
) -> Driver:
    """A driver whose instrument starts after ``trades[start_before - 1]`` (None: no position)."""
    positions = {}
    if start_before is not None:
        before = FIRST_ID + start_before - 1
        positions[SYM] = (before, ms_from_utc(T0 + (start_before - 1) * STEP))
    driver = Driver(
        Sequencer("okx", [SYM], limits, positions=positions, push_source="okx-ws", rest_source="okx-rest"),
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
