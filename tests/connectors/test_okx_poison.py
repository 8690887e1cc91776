"""Poison from a hostile OKX feed: the simulator injects it among the tape's real pushes, over loopback.

Oracle: the tape read with the csv module and the simulator's own log of what it injected. Each case must
yield a ``Rejected`` with its reason, the clean trades exactly once and in order, and a running stream.
"""

from __future__ import annotations

import re
import socket
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.okx.events import ConnectionHealth, Gap
from connectors.okx.source import OkxTradesSource
from flows.health import health_step
from market.health import HealthRules, assess_health
from market.types import Rejected, Trade
from tests.connectors.source_kit import BTC_ROWS, assert_exact, build, collect_for, drain, of, simulator

pytestmark = pytest.mark.slow

QUICK: dict[str, Any] = {"health_interval": 0.5, "reconnect_initial": 0.05, "rest_min_interval": 0.002}
REASONS = {
    "future": "s after its receive time (tolerance 5 s)",
    "behind": "s before its receive time (limit 600 s for a push)",
    "id-ahead": "ahead of the last trade",
    "foreign": "instrument POISON-USDT is not subscribed on this connection",
    "huge-price": "is not below 1E+12",
    "big-count": "count 4294967296 is outside",
    "many-trades": "push of 1001 trades (limit 1000)",
    "big-frame": "byte limit (frame of",
}


def kind_of(reason: str) -> str:
    (kind,) = [kind for kind, text in REASONS.items() if text in reason]
    return kind


def btc(sim: Any, first: int, last: int | None, **options: Any) -> OkxTradesSource:
    return OkxTradesSource(
        sim.ws,
        sim.rest,
        ["BTC-USDT"],
        start_after={"BTC-USDT": first - 1},
        end_trade_ids=None if last is None else {"BTC-USDT": last},
        **{**QUICK, **options},
    )


def test_each_kind_of_pushed_poison_is_rejected_and_the_clean_trades_come_out_once(tmp_path: Path) -> None:
    expected = BTC_ROWS[:160]  # ten seconds of the tape at real speed
    kinds = [arg for kind in REASONS for arg in ("--poison", kind)]
    with simulator(tmp_path, "--rebase-now", "--speed", "1", "--poison-every", "3", *kinds) as sim:
        part = build(btc(sim, expected[0].trade_id, expected[-1].trade_id))
        items = drain(part, 40)
        injected = Counter(re.findall(r"poison: (\S+) frame", sim.log.read_text()))
    assert_exact(items, expected)
    rejected: list[Rejected] = of(items, Rejected)
    assert all(r.source == "okx-ws" and r.raw and len(r.raw) <= 4096 for r in rejected)
    seen = Counter(kind_of(r.reason) for r in rejected)
    assert set(seen) == set(REASONS) and min(seen.values()) >= 4
    for kind, count in seen.items():  # frames injected after our last trade may still be in flight
        assert injected[kind] - 1 <= count <= injected[kind], kind
    big = next(r for r in rejected if kind_of(r.reason) == "big-frame")
    assert re.search(r"frame of 2\d{6} bytes, first 4096 kept", big.reason) and len(big.raw) == 4096
    health: ConnectionHealth = of(items, ConnectionHealth)[-1]
    assert health.rejects == len(rejected) and health.reconnects == 0 and health.gaps_unfilled == 0


def test_a_frame_too_large_for_the_socket_is_recorded_and_the_reconnect_backs_off(tmp_path: Path) -> None:
    expected = BTC_ROWS[:110]
    args = ("--rebase-now", "--speed", "1", "--poison-every", "25", "--poison", "giant-frame")
    with simulator(tmp_path, *args) as sim:
        source = btc(sim, expected[0].trade_id, expected[-1].trade_id, reconnect_initial=0.2)
        items = drain(build(source), 40)
        log = sim.log.read_text().splitlines()
    assert_exact(items, expected)
    closes = [r for r in of(items, Rejected) if "closed with 1009" in r.reason]
    assert len(closes) >= 2 and all(r.source == "okx-ws" and r.raw == b"" for r in closes)
    gaps: list[Gap] = of(items, Gap)
    assert all(g.filled for g in gaps) and len([g for g in gaps if g.reason == "reconnect"]) >= 2
    # Each connection was short-lived, so each pause before reconnecting is at least the one before.
    pauses: list[float] = []
    closed_at: datetime | None = None
    for line in log:
        at = datetime.strptime(line[:23] + "+0000", "%Y-%m-%d %H:%M:%S,%f%z")  # local, read as one zone
        if "code=1009" in line:
            closed_at = at
        elif "okx-simulator connect conn" in line and closed_at is not None:
            pauses.append((at - closed_at).total_seconds())
            closed_at = None
    assert len(pauses) >= 2 and pauses[0] >= 0.09
    assert all(later >= earlier - 0.03 for earlier, later in zip(pauses, pauses[1:], strict=False)), pauses


def test_a_forged_first_trade_does_not_capture_the_sequence(tmp_path: Path) -> None:
    args = ("--rebase-now", "--speed", "1", "--start-offset", "30", "--poison-first", "id-ahead")
    with simulator(tmp_path, *args) as sim:
        items = collect_for(build(OkxTradesSource(sim.ws, sim.rest, ["BTC-USDT"], **QUICK)), 5)
    assert_contiguous_tape(of(items, Trade), at_least=40)
    (forged,) = of(items, Rejected)
    assert "ahead of the last trade" in forged.reason and forged.source == "okx-ws"


def test_without_rest_a_forged_first_trade_still_does_not_capture_the_sequence(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on: REST is refused, for real
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    args = ("--rebase-now", "--speed", "1", "--start-offset", "30", "--poison-first", "id-ahead")
    with simulator(tmp_path, *args) as sim:
        source = OkxTradesSource(sim.ws, dead, ["BTC-USDT"], rest_retries=0, **QUICK)
        items = collect_for(build(source), 5)
    assert_contiguous_tape(of(items, Trade), at_least=40)
    (forged,) = of(items, Rejected)
    assert "ahead of the last trade" in forged.reason


def assert_contiguous_tape(trades: list[Trade], at_least: int) -> None:
    """The trades are consecutive tape rows, once each, in order (from wherever the start was)."""
    assert len(trades) >= at_least
    ids = [r.trade_id for r in BTC_ROWS]
    start = ids.index(trades[0].trade_id)
    assert [t.trade_id for t in trades] == ids[start : start + len(trades)]
    rows = BTC_ROWS[start : start + len(trades)]
    assert [(t.price, t.size) for t in trades] == [(r.price, r.size) for r in rows]


def test_backfilled_trades_outside_the_hole_are_rejected(tmp_path: Path) -> None:
    expected = BTC_ROWS[:300]
    wide = {"future_tolerance": timedelta(minutes=5)}  # the tape plays 3x: its times run ahead
    for kind in ("id", "time"):
        args = ("--rebase-now", "--speed", "3", "--drop-every-seconds", "1.5", "--rest-poison", kind)
        with simulator(tmp_path, *args) as sim:
            # No start position: the start is REST's newest trade, so every backfill follows a drop.
            source = OkxTradesSource(
                sim.ws,
                sim.rest,
                ["BTC-USDT"],
                end_trade_ids={"BTC-USDT": expected[-1].trade_id},
                **{**QUICK, **wide},
            )
            items = drain(build(source), 40)
            log = sim.log.read_text()
        rejected: list[Rejected] = of(items, Rejected)
        assert rejected and all(r.source == "okx-rest" for r in rejected)
        trades: list[Trade] = of(items, Trade)
        first = [r.trade_id for r in expected].index(trades[0].trade_id)
        if kind == "id":
            assert all("outside the ids asked for" in r.reason for r in rejected)
            assert_exact(items, expected[first:])
            assert all(g.filled for g in of(items, Gap))
        else:
            shifted = {int(i) for i in re.findall(r"REST poison: trade (\d+) stamped an hour early", log)}
            assert all("outside the hole" in r.reason for r in rejected)
            assert {int(r.reason.split()[2].rstrip(":")) for r in rejected} <= shifted
            lost = {int(r.reason.split()[2].rstrip(":")) for r in rejected}
            assert_exact(items, [r for r in expected[first:] if r.trade_id not in lost])
            unfilled = [g for g in of(items, Gap) if not g.filled]
            assert all(any(g.from_trade_id < i < g.to_trade_id for g in unfilled) for i in lost)


def test_health_turns_unhealthy_when_pushes_arrive_and_none_is_accepted(tmp_path: Path) -> None:
    # The replay runs 50x real time: within a second every pushed trade is stamped beyond the 5 s
    # tolerance, so the socket stays busy while ingestion stops.
    with simulator(tmp_path, "--rebase-now", "--speed", "50") as sim:
        part = build(OkxTradesSource(sim.ws, sim.rest, ["BTC-USDT"], **QUICK))
        items = collect_for(part, 6)  # room for a connection slot taken by earlier tests (3/s per process)
    reports: list[ConnectionHealth] = of(items, ConnectionHealth)
    last = reports[-2]  # the final report is the stopped one
    assert last.state == "subscribed" and last.stalled_seconds > 2 and last.stalled_symbol == "BTC-USDT"
    state = None
    for report in reports[:-1]:
        state, snapshot = health_step(state, report)
    assert snapshot.details["ingestion_stalled_seconds"] == last.stalled_seconds
    assessed = assess_health(snapshot, HealthRules(max_ingestion_stall=timedelta(seconds=2)))
    (issue,) = [i for i in assessed.issues if i.startswith("ingestion stopped")]
    assert not assessed.is_healthy and "after its receive time" in issue
