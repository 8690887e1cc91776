"""The flow's ``/metrics`` scraped over HTTP after real runs, each number checked against an independent
count: the rows the database stored (trades, rejects, gaps, candles with their ``inserted_at``, late
trades), the simulator's own log of the connections it dropped, and the tape."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from configs.settings import Settings
from connectors.database import DatabaseSink
from connectors.metrics import serve_metrics, stop_metrics
from flows.candles import CandleConfig
from flows.graph import FlowSinks, build_flow
from flows.okx import live_flow
from market.health import CollectorHealth
from market.types import Trade
from sql.migrate import migrate
from tests.connectors.source_kit import BTC_ROWS, btc_source, simulator
from tests.support.scrape import Scrape, labels, scrape

OKX_BTC = {"exchange": "okx", "symbol": "BTC-USDT"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def metrics_url() -> Iterator[str]:
    address = serve_metrics(free_port())
    assert address is not None
    yield f"http://{address[0]}:{address[1]}/metrics"
    stop_metrics()


def count(conn: psycopg.Connection, sql: str) -> int:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


class Watcher:
    """Scrapes while a flow runs, keeping what the connection gauges said."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[Scrape] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._done.wait(0.2):
            self.seen.append(scrape(self.url))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_live_run_counts_what_the_database_stored(
    pg_url: str, tmp_path: Path, metrics_url: str, workers: int
) -> None:
    """The live graph over the simulator with dropped connections and malformed frames: trades, rejects,
    gaps opened and filled, reconnects and the candles' close-to-row times, scraped over HTTP. With two
    workers (threads of one process) the counts are the process's, whichever worker made them."""
    migrate(pg_url)
    expected = BTC_ROWS[:10000]
    health: list[CollectorHealth] = []
    faults = ("--drop-every-seconds", "1", "--malformed-every", "150")
    with simulator(tmp_path, "--rebase-now", "--speed", "50", *faults) as sim:
        source = btc_source(sim, expected[0].trade_id, expected[-1].trade_id)
        sinks = FlowSinks(database=DatabaseSink(pg_url, tmp_path / "spool"), health=[TestingSink(health)])
        flow = live_flow(Settings(instruments=["BTC-USDT"]), sinks, source)
        before = scrape(metrics_url)
        started = datetime.now(UTC)
        with Watcher(metrics_url) as watcher:
            if workers == 1:
                run_main(flow)
            else:
                cluster_main(flow, [], 0, worker_count_per_proc=workers)
        ended = datetime.now(UTC)
        after = scrape(metrics_url)
        drops = len(sim.log_lines("drop: connection aborted"))

    with psycopg.connect(pg_url) as conn:
        trades = count(conn, "SELECT count(*) FROM trades WHERE exchange = 'okx' AND symbol = 'BTC-USDT'")
        rejects = count(conn, "SELECT count(*) FROM rejects WHERE source = 'okx-ws'")
        filled = count(conn, "SELECT count(*) FROM gaps WHERE filled")
        unfilled = count(conn, "SELECT count(*) FROM gaps WHERE NOT filled")
        candles, waited = conn.execute(
            "SELECT count(*), sum(extract(epoch FROM inserted_at - time)) FROM candles_1m"
            " WHERE exchange = 'okx' AND symbol = 'BTC-USDT'"
        ).fetchone() or (0, None)

    assert trades == len(expected)
    assert after.since(before, "tcp_trades_total", **OKX_BTC) == trades
    assert rejects and after.since(before, "tcp_rejects_total", source="okx-ws") == rejects
    assert filled and after.since(before, "tcp_gaps_filled_total", **OKX_BTC) == filled
    assert after.since(before, "tcp_gaps_unfilled_total", **OKX_BTC) == unfilled
    assert after.since(before, "tcp_gaps_opened_total", **OKX_BTC) == filled + unfilled

    reconnects = after.since(before, "tcp_reconnects_total", exchange="okx")
    assert reconnects == health[-1].reconnect_attempts
    assert drops - 1 <= reconnects <= drops and drops >= 3  # the last drop may land as the run ends

    # Each stored 1m candle was observed once, after its transaction committed: no sooner than the
    # transaction began (the row's inserted_at) and within a few seconds of it.
    assert isinstance(waited, Decimal) and candles
    observed = after.since(before, "tcp_candle_close_to_row_seconds_count", exchange="okx")
    total = after.since(before, "tcp_candle_close_to_row_seconds_sum", exchange="okx")
    assert observed == candles
    assert float(waited) <= total <= float(waited) + 5 * candles
    inf = after.since(before, "tcp_candle_close_to_row_seconds_bucket", exchange="okx", le="+Inf")
    assert inf == observed

    # While it ran, the connection was seen subscribed, hearing frames within the run.
    connection = labels(exchange="okx", connection="BTC-USDT")
    up = [s.series("tcp_connection_up").get(connection) for s in watcher.seen]
    assert 1.0 in up
    heard = [s.series("tcp_connection_last_message_timestamp_seconds").get(connection) for s in watcher.seen]
    stamps = [datetime.fromtimestamp(h, UTC) for h in heard if h is not None]
    assert stamps and all(started <= at <= ended for at in stamps)
    assert all(connection in s.series("tcp_source_queued_items") for s in watcher.seen)


T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def trade(trade_id: int, at: timedelta, price: str = "100") -> Trade:
    return Trade("okx", "ETH-USDT", trade_id, Decimal(price), Decimal(1), "buy", T0 + at)


def test_late_trades_are_counted_as_the_database_stores_them(
    pg_url: str, tmp_path: Path, metrics_url: str
) -> None:
    migrate(pg_url)
    items = [
        trade(1, timedelta(seconds=10)),
        trade(2, timedelta(minutes=1, seconds=30)),
        trade(3, timedelta(seconds=55)),  # its candle [12:00, 12:01) was emitted already
        trade(4, timedelta(minutes=2, seconds=5)),
        trade(5, timedelta(seconds=20)),  # late again
        trade(6, timedelta(minutes=3, seconds=1)),
        trade(7, timedelta(minutes=2, seconds=59)),  # inside the grace of 12:03: on time
    ]
    config = CandleConfig(grace=timedelta(seconds=2), clock="event")
    flow = build_flow(
        "late", TestingSource(items), config, FlowSinks(database=DatabaseSink(pg_url, tmp_path))
    )
    before = scrape(metrics_url)
    run_main(flow)
    after = scrape(metrics_url)
    with psycopg.connect(pg_url) as conn:
        stored = conn.execute("SELECT trade_id FROM late_trades ORDER BY trade_id").fetchall()
    assert stored == [(3,), (5,)]
    assert after.since(before, "tcp_late_trades_total", exchange="okx", symbol="ETH-USDT") == len(stored)
