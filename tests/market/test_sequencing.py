"""The pure sequencer, without a socket: hypothesis shuffles, duplicates, drops and poisons pushes (focused
cases: test_sequencing_cases.py).

The oracle is a model exchange (tests/market/sequencing_kit.py): consecutive trade ids with increasing
times; REST answers only trades whose time has passed. Every clean trade must leave exactly once, in id
order, and nothing else may leave as a trade; poison never moves the position; feed states never claim
more than was emitted.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from market.sequencing import (
    Disconnected,
    Gap,
    Push,
    Subscribed,
)
from market.types import FeedState, Rejected, Trade
from tests.market.sequencing_kit import (
    DELAY,
    FIRST_ID,
    SYM,
    T0,
    assert_exactly_once,
    assert_feed_states_honest,
    assert_gaps_precede_their_trades,
    market,
    push_of,
    started,
)

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
