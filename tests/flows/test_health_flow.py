"""The collector health records through the real dataflow and into the ``collector_health`` row: what a
collector follows and collects (``symbols``, ``data_types``), whether a supervisor restarts it
(``auto_restart``), how it is checked (``health_check_interval_seconds``, ``stale_data_threshold_seconds``,
``last_check_time``) next to its statistics. Each is checked against what the test gave the flow: the
instruments the source was built with, the records' own times, the environment the supervisor sets and
the health rules' threshold."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from configs.settings import Settings
from connectors.health_table import HealthTableSink, latest_health
from connectors.okx.events import ConnectionHealth, ConnectionState
from connectors.redis_codec import decode, encode, payload_of
from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow
from flows.health import Restarts
from flows.okx import live_flow
from market.health import HealthRules
from sql.migrate import migrate
from tests.connectors.source_kit import BTC_ROWS, btc_source, simulator
from tests.connectors.test_health_table import connection_report
from tests.support.health_records import T0

STALE = HealthRules().stale_after.total_seconds()
OFFSETS = (0, 5, 12, 14)
"""Seconds after T0 at which each connection reports: checks 5, 7 and 2 s apart."""
CONNECTIONS = {"public-0": ("BTC-USDT", "ETH-USDT"), "public-1": ("SOL-USDT",)}


def reports() -> list[ConnectionHealth]:
    items = []
    for seconds in OFFSETS:
        for connection, instruments in CONNECTIONS.items():
            state: ConnectionState = "connecting" if seconds == 0 else "subscribed"
            at, received = T0 + timedelta(seconds=seconds), seconds * 10
            report = replace(
                connection_report(at, state),
                connection=connection,
                instruments=instruments,
                connected_since=T0 if seconds else None,
                last_message_at=at,
                messages_received=received,
                trades_emitted=received,
            )
            items.append(report)
    return items


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(
    ("environ", "auto_restart"),
    [
        ({}, False),
        ({"TCP_AUTO_RESTART": "true"}, True),
        ({"TCP_RESTARTS": "1", "TCP_LAST_RESTART": T0.isoformat()}, True),
        ({"TCP_AUTO_RESTART": "0"}, False),
    ],
)
def test_each_connection_reports_what_it_follows_and_how_it_is_checked(
    environ: dict[str, str], auto_restart: bool, workers: int
) -> None:
    seen: list = []
    flow = build_flow(
        "health",
        TestingSource(reports()),
        CandleConfig(clock="event"),
        FlowSinks(health=[TestingSink(seen)]),
        restarts=Restarts.from_environ(environ),
    )
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)

    for connection, instruments in CONNECTIONS.items():
        mine = sorted((h for h in seen if h.collector == f"okx:{connection}"), key=lambda h: h.time)
        assert [h.time for h in mine] == [T0 + timedelta(seconds=s) for s in OFFSETS]
        assert all(h.symbols == instruments and h.data_types == ("trades",) for h in mine)
        assert {h.auto_restart for h in mine} == {auto_restart}
        assert [h.health_check_interval_seconds for h in mine] == [None, 5.0, 7.0, 2.0]
        assert all(h.stale_data_threshold_seconds == STALE == 60.0 for h in mine)
        assert all(h.last_check_time == h.time for h in mine)
        # the statistics beside them, as the records gave them
        assert [h.messages_received for h in mine] == [s * 10 for s in OFFSETS]
        assert [h.messages_processed for h in mine] == [s * 10 for s in OFFSETS]
        assert [h.uptime_seconds for h in mine] == [float(s) for s in OFFSETS]
        assert [h.status for h in mine] == ["starting", "running", "running", "running"]
        assert all(h.should_be_running for h in mine)


@pytest.mark.slow
def test_a_live_run_stores_the_record_with_every_field(pg_url: str, tmp_path: Path) -> None:
    """The live flow over the simulator: every snapshot names the source's instruments and data type,
    says the supervisor restarts it, how often and by what threshold it was checked, and the
    ``collector_health`` row holds the last of them field for field."""
    migrate(pg_url)
    expected = BTC_ROWS[:3000]
    seen: list = []
    with simulator(tmp_path, "--rebase-now", "--speed", "50") as sim:
        source = btc_source(sim, expected[0].trade_id, expected[-1].trade_id)
        sinks = FlowSinks(health=[TestingSink(seen), HealthTableSink(pg_url)])
        restarts = Restarts.from_environ({"TCP_AUTO_RESTART": "1"})
        run_main(live_flow(Settings(instruments=["BTC-USDT"]), sinks, source, restarts=restarts))

    assert len(seen) >= 3
    assert {(h.collector, h.symbols, h.data_types, h.auto_restart) for h in seen} == {
        ("okx:BTC-USDT", ("BTC-USDT",), ("trades",), True)
    }
    times = [h.time for h in seen]
    assert times == sorted(times)
    intervals = [None, *((b - a).total_seconds() for a, b in zip(times, times[1:], strict=False))]
    assert [h.health_check_interval_seconds for h in seen] == intervals
    assert all(h.stale_data_threshold_seconds == STALE and h.last_check_time == h.time for h in seen)
    last = seen[-1]
    assert last.status == "stopped" and not last.should_be_running
    assert last.messages_processed == len(expected)  # every trade of the tape, once

    with psycopg.connect(pg_url) as conn:
        (stored,) = latest_health(conn, last.time)
        (row,) = conn.execute("SELECT collector, time, status FROM collector_health").fetchall()
    assert row == (last.collector, last.time, last.status)
    assert stored == decode(encode(payload_of(last)[2]))
    assert stored["symbols"] == ["BTC-USDT"] and stored["data_types"] == ["trades"]
    assert stored["auto_restart"] is True
    assert stored["health_check_interval_seconds"] == intervals[-1]
    assert stored["stale_data_threshold_seconds"] == STALE
    assert stored["last_check_time"] == last.time
    statistics = ("messages_received", "messages_processed", "errors", "restarts", "uptime_seconds")
    assert [stored[k] for k in statistics] == [getattr(last, k) for k in statistics]
    assert stored["reconnect_attempts"] == last.reconnect_attempts
    assert stored["last_message_time"] == last.last_message_time
    assert stored["last_error"] == last.last_error
