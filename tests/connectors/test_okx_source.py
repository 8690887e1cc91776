"""OkxTradesSource against the real OKX simulator under faults: drops, notices, stalls, malformed,
duplicated, reordered and aggregated pushes, a resume, and the feed states around them (the connection
itself: test_okx_source_connection.py).

Oracle: the tape CSV read with the csv module. Each fault run must yield the tape's trades between the
start and end ids exactly once, in order, with the tape's prices, sizes, sides and times.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, cluster_main, run_main

from connectors.okx.events import ConnectionHealth, Gap
from connectors.okx.source import OkxItem, OkxTradesSource, Positions
from market.types import FeedState, Rejected, Trade, ms_from_utc
from tests.connectors.source_kit import (
    BTC_ROWS,
    FAST,
    assert_exact,
    btc_source,
    build,
    drain,
    of,
    simulator,
)
from tests.support.live_samples import until


def test_drop_every_second_yields_the_tape_once_in_order_through_bytewax(tmp_path: Path) -> None:
    first, last = BTC_ROWS[0].trade_id, BTC_ROWS[-1].trade_id
    with simulator(tmp_path, "--rebase-now", "--speed", "100", "--drop-every-seconds", "1") as sim:
        flow = Dataflow("okx_drop")
        stream = op.input("okx", flow, btc_source(sim, first, last))
        out: list[OkxItem] = []
        op.output("out", stream, TestingSink(out))
        run_main(flow)
        drops = sim.log_lines("drop: connection aborted")
    trades = assert_exact(out, BTC_ROWS)
    assert len(drops) >= 3
    gaps: list[Gap] = of(out, Gap)
    # Whether there is a hole at the resume position depends on timing (the subscription may land
    # before the replay's first trade; a first connection may drop before any trade): assert what
    # holds in every case: every hole is filled, and reconnect holes carry their recovery time.
    assert all(g.filled for g in gaps)
    assert all(g.from_trade_id == first - 1 for g in gaps if g.reason == "resume")
    reconnect_gaps = [g for g in gaps if g.reason == "reconnect"]
    assert reconnect_gaps and all(g.recovery_seconds is not None for g in reconnect_gaps)
    assert sum(t.origin == "rest" for t in trades) > 0
    for gap in gaps:  # the gap's trades are exactly the REST-origin trades between its bounds
        inside = [t for t in trades if gap.from_trade_id < t.trade_id < gap.to_trade_id]
        assert [t.origin for t in inside] == ["rest"] * gap.missing == ["rest"] * gap.trades_backfilled
    health: list[ConnectionHealth] = of(out, ConnectionHealth)
    assert health[-1].state == "stopped" and health[-1].reconnects >= len(reconnect_gaps)
    assert health[-1].trades_emitted == len(trades) and health[-1].gaps_unfilled == 0


def test_two_workers_run_the_partition_once(tmp_path: Path) -> None:
    expected = BTC_ROWS[:3000]
    with simulator(tmp_path, "--rebase-now", "--speed", "50", "--drop-every-seconds", "0.7") as sim:
        flow = Dataflow("okx_two_workers")
        stream = op.input("okx", flow, btc_source(sim, expected[0].trade_id, expected[-1].trade_id))
        out: list[OkxItem] = []
        op.output("out", stream, TestingSink(out))
        cluster_main(flow, [], 0, worker_count_per_proc=2)
    assert_exact(out, expected)


def test_64008_notice_reconnects_before_the_server_closes(tmp_path: Path) -> None:
    expected = BTC_ROWS[:3000]
    with simulator(tmp_path, "--rebase-now", "--speed", "50", "--notice-then-close", "3") as sim:
        items = drain(build(btc_source(sim, expected[0].trade_id, expected[-1].trade_id)), 30)
        notices = sim.log_lines("notice 64008")
        server_closes = sim.log_lines("closing after the 64008 notice")
    assert_exact(items, expected)
    assert len(notices) >= 2
    assert server_closes == []  # every connection was left before the server closed it
    health: ConnectionHealth = of(items, ConnectionHealth)[-1]
    assert health.reconnects >= len(notices) - 1 and health.gaps_unfilled == 0


def test_stall_is_detected_by_the_ping_timeout(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    expected = BTC_ROWS[:2500]
    args = ("--rebase-now", "--speed", "50", "--stall-after-messages", "600", "--stall-seconds", "10")
    with simulator(tmp_path, *args) as sim:
        source = btc_source(
            sim, expected[0].trade_id, expected[-1].trade_id, ping_interval=0.3, pong_timeout=0.3
        )
        items = drain(build(source), 30)
    assert_exact(items, expected)
    health: ConnectionHealth = of(items, ConnectionHealth)[-1]
    assert health.reconnects >= 1 and health.pings_sent >= 1
    assert any("no pong or message within 0.3 s" in r.getMessage() for r in caplog.records)
    assert all(g.filled for g in of(items, Gap))


def test_malformed_frames_become_rejected_items_and_the_stream_goes_on(tmp_path: Path) -> None:
    expected = BTC_ROWS[:2000]
    with simulator(tmp_path, "--rebase-now", "--speed", "50", "--malformed-every", "150") as sim:
        items = drain(build(btc_source(sim, expected[0].trade_id, expected[-1].trade_id)), 30)
        rejects = len(of(items, Rejected))
        until(
            lambda: len(sim.log_lines("malformed: extra broken frame")) >= rejects, 5, "the simulator's log"
        )
        malformed = sim.log_lines("malformed: extra broken frame")
    assert_exact(items, expected)
    rejected: list[Rejected] = of(items, Rejected)
    assert len(malformed) >= 5
    # Frames sent after our last trade may still be in flight when the partition ends.
    assert len(malformed) - 2 <= len(rejected) <= len(malformed)
    assert all(r.source == "okx-ws" and r.raw and r.reason for r in rejected)
    assert of(items, ConnectionHealth)[-1].rejects == len(rejected)


def test_duplicated_and_reordered_pushes_are_dropped_and_reordered(tmp_path: Path) -> None:
    expected = BTC_ROWS[:2500]
    args = ("--rebase-now", "--speed", "50", "--duplicate-every", "7", "--reorder-every", "5")
    with simulator(tmp_path, *args) as sim:
        items = drain(build(btc_source(sim, expected[0].trade_id, expected[-1].trade_id)), 30)
        duplicates = sim.log_lines("duplicate: push")
        reorders = sim.log_lines("reorder: push")
    assert_exact(items, expected)
    assert len(duplicates) >= 50 and len(reorders) >= 50
    health: ConnectionHealth = of(items, ConnectionHealth)[-1]
    # Frames in flight when the partition ends are not read. Pushes of trades the catch-up after
    # subscribing already took from REST, and the subscription's snapshot push, are duplicates too.
    from_rest = sum(t.origin == "rest" for t in of(items, Trade))
    assert len(duplicates) - 3 <= health.duplicates_dropped <= len(duplicates) + from_rest + 1
    assert health.reconnects == 0
    # Reordered pushes waited for each other: no REST round trip, no gap record within the connection.
    assert {g.reason for g in of(items, Gap)} <= {"resume"}


def test_aggregated_pushes_follow_the_count_rule(tmp_path: Path) -> None:
    expected = BTC_ROWS[:3000]
    with simulator(tmp_path, "--rebase-now", "--speed", "50", "--aggregate") as sim:
        items = drain(build(btc_source(sim, expected[0].trade_id, expected[-1].trade_id)), 30)
    trades: list[Trade] = of(items, Trade)
    assert any(t.count > 1 for t in trades)
    covered = [i for t in trades for i in range(t.trade_id - t.count + 1, t.trade_id + 1)]
    # An aggregated push reaching past the end id is not emitted: the run stops at the push before it.
    assert len(covered) > len(expected) - 50
    assert covered == [r.trade_id for r in expected[: len(covered)]]
    assert sum(t.size for t in trades) == sum(r.size for r in expected[: len(covered)])
    assert {g.reason for g in of(items, Gap)} <= {"resume"}


def test_resume_state_backfills_from_the_snapshot_and_unreachable_history_is_an_unfilled_gap(
    tmp_path: Path,
) -> None:
    start = 1000
    with simulator(tmp_path, "--rebase-now", "--speed", "50", "--start-offset", "60") as sim:
        source = OkxTradesSource(
            sim.ws, sim.rest, ["BTC-USDT"], end_trade_ids={"BTC-USDT": BTC_ROWS[3000].trade_id}, **FAST
        )
        (key,) = source.list_parts()
        resume: Positions = {"BTC-USDT": (BTC_ROWS[start - 1].trade_id, None)}
        part = source.build_part("okx", key, resume)
        items = drain(part, 30)
        last_ms = ms_from_utc(of(items, Trade)[-1].ts_event)
        assert part.snapshot() == {"BTC-USDT": (BTC_ROWS[3000].trade_id, last_ms)}
        # Starting before the simulator's first trade: REST cannot reach back, the gap is unfilled.
        too_early = BTC_ROWS[0].trade_id - 50
        early = OkxTradesSource(
            sim.ws,
            sim.rest,
            ["BTC-USDT"],
            start_after={"BTC-USDT": too_early},
            end_trade_ids={"BTC-USDT": BTC_ROWS[3200].trade_id},
            **FAST,
        )
        early_items = drain(build(early), 30)
    assert_exact(items, BTC_ROWS[start:3001])
    gap = of(items, Gap)[0]
    assert (gap.reason, gap.filled, gap.from_trade_id) == ("resume", True, BTC_ROWS[start - 1].trade_id)
    unfilled = of(early_items, Gap)[0]
    assert (unfilled.reason, unfilled.filled, unfilled.from_trade_id) == ("resume", False, too_early)
    assert unfilled.trades_backfilled > 0
    assert_exact(early_items, BTC_ROWS[:3201])  # what REST had is still emitted, in order
    assert of(early_items, ConnectionHealth)[-1].gaps_unfilled == 1


def test_feed_states_go_down_on_drops_and_up_only_after_the_backfill(tmp_path: Path) -> None:
    expected = BTC_ROWS[:2000]
    with simulator(tmp_path, "--rebase-now", "--speed", "20", "--drop-every-seconds", "1") as sim:
        items = drain(build(btc_source(sim, expected[0].trade_id, expected[-1].trade_id)), 40)
    assert_exact(items, expected)
    states: list[FeedState] = of(items, FeedState)
    assert (items[0], states[-1].live, states[-1].reason) == (states[0], False, "stopped")
    assert (states[0].live, states[0].reason) == (False, "connecting")
    live = [s for s in states if s.live]
    assert all(b.heard_at >= a.heard_at for a, b in zip(live, live[1:], strict=False))
    # heard_at never runs ahead of the trades emitted before it.
    for index, item in enumerate(items):
        if isinstance(item, FeedState) and item.live:
            later = [t for t in items[index:] if isinstance(t, Trade) and t.origin == "ws"]
            assert all(t.ts_recv is not None and t.ts_recv > item.heard_at for t in later)
    reconnects = [i for i, g in enumerate(items) if isinstance(g, Gap) and g.reason == "reconnect"]
    assert len(reconnects) >= 3
    for at in reconnects:
        before = [s for s in items[:at] if isinstance(s, FeedState)]
        since_live = before[max(i for i, s in enumerate(before) if s.live) + 1 :]
        assert since_live and since_live[0].reason.startswith("connection lost")  # down on the drop
        gap = items[at]
        assert isinstance(gap, Gap)
        after = items[at + 1 :]
        landed = max(
            i
            for i, t in enumerate(after)
            if isinstance(t, Trade)
            and t.origin == "rest"
            and gap.from_trade_id < t.trade_id < gap.to_trade_id
        )
        up = min(i for i, s in enumerate(after) if isinstance(s, FeedState) and s.live)
        assert up > landed  # live again only after the backfilled trades
