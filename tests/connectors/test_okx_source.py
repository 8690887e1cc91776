"""OkxTradesSource against the real OKX simulator (a ``python -m connectors.okx.simulator`` subprocess).

Oracle: the tape CSV read with the csv module. Each fault run must yield the tape's trades between the
start and end ids exactly once, in order, with the tape's prices, sizes, sides and times.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, cluster_main, run_main

from connectors.okx.connection import ConnectLimiter
from connectors.okx.events import ConnectionHealth, Gap
from connectors.okx.source import OkxItem, OkxTradesPartition, OkxTradesSource, Positions
from market.types import FeedState, Rejected, Trade, ms_from_utc

REPO = Path(__file__).parents[2]
TAPES = REPO / "tests" / "data" / "tapes"
BTC = TAPES / "BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"
MATIC = TAPES / "MATIC-USDT-SWAP-trades-2023-08-20T1601Z.csv"
# Short timings so a run stays within seconds; REST pacing low because the replay runs 50-100x real time,
# which also stamps its trades minutes ahead of the clock: the future tolerance is widened accordingly.
FAST: dict[str, Any] = {
    "ping_interval": 1.0,
    "health_interval": 0.5,
    "reconnect_initial": 0.05,
    "rest_min_interval": 0.002,
    "backfill_max_pages": 400,
    "future_tolerance": timedelta(days=1),
}


@dataclass(frozen=True)
class Row:
    trade_id: int
    side: str
    price: Decimal
    size: Decimal
    ms: int


def tape(path: Path) -> list[Row]:
    with path.open(newline="") as handle:
        return [
            Row(
                int(r["trade_id"]), r["side"], Decimal(r["price"]), Decimal(r["size"]), int(r["created_time"])
            )
            for r in csv.DictReader(handle)
        ]


BTC_ROWS = tape(BTC)


@dataclass
class Sim:
    ws: str
    rest: str
    log: Path

    def log_lines(self, needle: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if needle in line]


@contextmanager
def simulator(tmp_path: Path, *args: str, path: Path = BTC) -> Iterator[Sim]:
    log = tmp_path / "simulator.log"
    command = [sys.executable, "-m", "connectors.okx.simulator", "--tape", str(path), "--port", "0", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with (
        log.open("w") as stderr,
        subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
        ) as proc,
    ):
        try:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline())
            yield Sim(ready["ws_public"], ready["rest"], log)
        finally:
            proc.terminate()
            proc.wait(10)
            assert proc.stdout is not None
            proc.stdout.close()


def drain(part: OkxTradesPartition, within: float) -> list[OkxItem]:
    """Pull a partition like Bytewax does until it ends (or fail after ``within`` seconds)."""
    items: list[OkxItem] = []
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            try:
                items.extend(part.next_batch())
            except StopIteration:
                return items
            time.sleep(0.002)
        raise AssertionError(f"partition did not end within {within} s; health {part.health()}")
    finally:
        part.close()


def collect_for(part: OkxTradesPartition, seconds: float) -> list[OkxItem]:
    items: list[OkxItem] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            items.extend(part.next_batch())
            time.sleep(0.005)
    finally:
        part.close()
    return items


def build(source: OkxTradesSource) -> OkxTradesPartition:
    (key,) = source.list_parts()
    return source.build_part("okx", key, None)


def of(items: list[OkxItem], kind: type) -> list:
    return [item for item in items if isinstance(item, kind)]


def assert_exact(items: list[OkxItem], expected: list[Row]) -> list[Trade]:
    """The trades are the expected tape rows, once each, in order, with the tape's fields."""
    trades: list[Trade] = of(items, Trade)
    assert [t.trade_id for t in trades] == [r.trade_id for r in expected]
    offsets = {ms_from_utc(t.ts_event) - r.ms for t, r in zip(trades, expected, strict=True)}
    assert len(offsets) == 1  # one constant rebase shift
    for trade, row in zip(trades, expected, strict=True):
        assert (trade.side, trade.price, trade.size) == (row.side, row.price, row.size)
        assert trade.symbol == "BTC-USDT"
        assert trade.origin in ("ws", "rest")
    gaps: list[Gap] = of(items, Gap)
    assert sum(g.trades_backfilled for g in gaps) == sum(t.origin == "rest" for t in trades)
    return trades


def cut(first: int, last: int) -> list[Row]:
    return [r for r in BTC_ROWS if first <= r.trade_id <= last]


def btc_source(sim: Sim, first: int, last: int, **options: Any) -> OkxTradesSource:
    return OkxTradesSource(
        sim.ws,
        sim.rest,
        ["BTC-USDT"],
        start_after={"BTC-USDT": first - 1},
        end_trade_ids={"BTC-USDT": last},
        **{**FAST, **options},
    )


# ----------------------------------------------------------------------------- tests


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
        time.sleep(0.2)
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


def test_subscribe_acks_ping_pong_health_and_refused_instruments(tmp_path: Path) -> None:
    with simulator(tmp_path, "--rebase-now", "--speed", "1", path=MATIC) as sim:
        source = OkxTradesSource(
            sim.ws,
            sim.rest,
            ["MATIC-USDT-SWAP", "NOPE-USDT"],
            ping_interval=0.2,
            pong_timeout=0.5,
            health_interval=0.3,
        )
        part = build(source)
        items = collect_for(part, 1.6)
        health = part.health()
        # A partition whose every instrument is refused ends instead of reconnecting forever.
        refused_only = drain(build(OkxTradesSource(sim.ws, sim.rest, ["NOPE-USDT"])), 10)
    end: ConnectionHealth = of(refused_only, ConnectionHealth)[-1]
    assert (end.state, end.subscribe_errors, end.trades_emitted) == ("stopped", 1, 0)
    assert "refused" in (end.last_error or "")
    assert health.state == "stopped"
    reports: list[ConnectionHealth] = of(items, ConnectionHealth)
    assert len(reports) >= 4
    live = reports[-2]
    assert live.state == "subscribed" and live.connected_since is not None and live.reconnects == 0
    # The batch request is refused as a whole (60018), then NOPE-USDT alone; MATIC-USDT-SWAP is subscribed.
    assert live.subscribe_errors == 2 and "60018" in (live.last_error or "")
    assert "NOPE-USDT" in (live.last_error or "")
    assert live.pings_sent >= 3 and live.pongs_received >= live.pings_sent - 1
    assert live.instruments == ("MATIC-USDT-SWAP", "NOPE-USDT")
    assert health.pongs_received >= 3


def test_instruments_are_sharded_over_connections() -> None:
    source = OkxTradesSource(
        "ws://127.0.0.1:1/ws/v5/public",
        "http://127.0.0.1:1",
        ["A", "B", "C", "D", "E", "A"],
        max_instruments_per_connection=2,
    )
    assert source.list_parts() == ["A,B", "C,D", "E"]
    assert source.shards["E"] == ("E",)


def test_connection_limiter_allows_three_per_second() -> None:
    limiter = ConnectLimiter(rate=3, per=1.0)
    delays = [limiter.reserve() for _ in range(7)]
    assert delays[:3] == [0.0, 0.0, 0.0]
    assert all(0.95 <= d <= 1.0 for d in delays[3:6])
    assert 1.95 <= delays[6] <= 2.0


def connect_times(sim: Sim) -> list[datetime]:
    """When the simulator accepted each websocket connection (its log's local clock, read as UTC)."""
    return [
        datetime.strptime(line[:23] + "+0000", "%Y-%m-%d %H:%M:%S,%f%z")
        for line in sim.log_lines("okx-simulator connect conn")
    ]


def test_the_queue_to_the_dataflow_is_bounded_and_nothing_is_lost(tmp_path: Path) -> None:
    expected = BTC_ROWS[:4000]
    with simulator(tmp_path, "--rebase-now", "--speed", "100") as sim:
        part = build(btc_source(sim, expected[0].trade_id, expected[-1].trade_id, queue_max_items=300))
        time.sleep(2)  # the dataflow pulls nothing while the replay pushes about 3,000 trades
        waiting = part.queued
        items = drain(part, 60)
    # One input's items can land after the bound was reached: a push with its feed state (the only
    # backfill, at the start, found the queue empty).
    assert 300 <= waiting <= 305
    assert_exact(items, expected)


@pytest.mark.slow
def test_64008_notices_back_off_like_any_drop(tmp_path: Path) -> None:
    with simulator(tmp_path, "--rebase-now", "--speed", "1", "--notice-then-close", "3") as sim:
        collect_for(build(OkxTradesSource(sim.ws, sim.rest, ["BTC-USDT"])), 8)  # default timings
        times = connect_times(sim)
        notices = sim.log_lines("notice 64008")
    # Without backoff the limit of 3 connections/s alone would allow 24 in 8 s.
    assert 3 <= len(times) <= 7 and len(notices) >= len(times) - 1
    pauses = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert pauses[0] >= 0.25 and all(b >= a - 0.05 for a, b in zip(pauses, pauses[1:], strict=False)), pauses


@pytest.mark.slow
def test_the_process_wide_connection_limit_holds_across_partitions(tmp_path: Path) -> None:
    rows = BTC.read_text().splitlines()
    symbols = ["ETH-USDT", "SOL-USDT", "XRP-USDT"]
    extra = []
    for symbol in symbols:
        copy = tmp_path / f"{symbol}.csv"
        copy.write_text("\n".join([rows[0], *(symbol + row[row.index(",") :] for row in rows[1:])]) + "\n")
        extra += ["--tape", str(copy)]
    args = ("--rebase-now", "--speed", "1", "--drop-every-seconds", "0.3", *extra)
    with simulator(tmp_path, *args) as sim:
        timings = {**FAST, "reconnect_initial": 0.01, "reconnect_max": 0.05}
        source = OkxTradesSource(
            sim.ws, sim.rest, ["BTC-USDT", *symbols], max_instruments_per_connection=1, **timings
        )
        parts = [source.build_part("okx", key, None) for key in source.list_parts()]
        deadline = time.monotonic() + 4
        try:
            while time.monotonic() < deadline:
                for part in parts:
                    part.next_batch()
                time.sleep(0.005)
        finally:
            for part in parts:
                part.close()
        times = connect_times(sim)
    assert len(parts) == 4 and len(times) >= 10  # the connections wanted far more than 3/s
    spans = [(times[i + 3] - times[i]).total_seconds() for i in range(len(times) - 3)]
    assert min(spans) >= 0.95, spans  # never a 4th connection within a second


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
