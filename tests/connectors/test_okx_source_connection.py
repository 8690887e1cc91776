"""OkxTradesSource's connections against the real OKX simulator: subscribe acks, ping/pong and health,
refused instruments, sharding, the connection limit and backoff, and the bounded queue to the dataflow.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.okx.connection import ConnectLimiter
from connectors.okx.events import ConnectionHealth
from connectors.okx.source import OkxItem, OkxTradesSource
from connectors.okx.stream import probe_close
from market.types import FeedState
from tests.connectors.simulator_kit import BTC, MATIC
from tests.connectors.source_kit import (
    BTC_ROWS,
    FAST,
    Sim,
    assert_exact,
    btc_source,
    build,
    collect_for,
    collect_until,
    drain,
    of,
    simulator,
)
from tests.support.live_samples import until


def pinged_three_times(items: list[OkxItem]) -> bool:
    """A health report, followed by another, counts three pings and three pongs."""
    reports: list[ConnectionHealth] = of(items, ConnectionHealth)
    return len(reports) >= 4 and reports[-2].pings_sent >= 3 and reports[-2].pongs_received >= 3


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
        items = collect_until(part, pinged_three_times, 10, "three pings answered in a health report")
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


def test_a_silent_socket_is_probed_when_a_candle_is_due_to_close(tmp_path: Path) -> None:
    """The tape is played before the subscription, so nothing but answers to pings comes; the silence
    probe is 20 s away. A grace putting the next close plus grace 3 s from now makes the connection ask
    then, and the pong moves the instrument's feed clock past that instant."""
    now = datetime.now(UTC)
    due = now + timedelta(seconds=3)
    grace = due - datetime.fromtimestamp(now.timestamp() // 60 * 60, UTC)  # due is a minute's close + grace
    with simulator(tmp_path, "--speed", "0", path=BTC) as sim:
        options = {**FAST, "ping_interval": 20.0}  # the silence probe 20 s away
        source = OkxTradesSource(sim.ws, sim.rest, ["BTC-USDT"], close_probe=grace, **options)

        def heard_past_due(items: list[OkxItem]) -> bool:
            return any(s.live and s.heard_at >= due for s in of(items, FeedState))

        part = build(source)
        items = collect_until(part, heard_past_due, 15, "a live feed state heard after the close probe")
        health = part.health()
    heard = next(s.heard_at for s in of(items, FeedState) if s.live and s.heard_at >= due)
    assert heard < due + timedelta(seconds=5)  # the probe's pong, not the silence probe 20 s on
    assert health.pings_sent >= 1 and health.pongs_received >= 1


@pytest.mark.parametrize("delay_ms", [0, 3, -40, 700])
@pytest.mark.parametrize("grace_s", [0.0, 2.0, 5.5, 61.0])
def test_the_probe_is_for_the_first_close_whose_instant_is_ahead(grace_s: float, delay_ms: int) -> None:
    grace, delay = timedelta(seconds=grace_s), timedelta(milliseconds=delay_ms)
    for at in (
        datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC) + k * timedelta(milliseconds=997) for k in range(200)
    ):
        closes = [datetime(2024, 1, 1, 11, 57, tzinfo=UTC) + m * timedelta(minutes=1) for m in range(10)]
        expected = next(c for c in closes if c + grace + delay > at)  # the oracle: walk the minutes
        assert probe_close(at, grace, delay) == expected


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
        # the dataflow pulls nothing while the replay pushes about 3,000 trades
        until(lambda: part.queued >= 300, 10, "a full queue")
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
