"""The live flow as it runs (`python -m bytewax.run flows.okx`) serves /metrics on METRICS__PORT: scraped
over HTTP while the simulator replays the end of a tape, the trades it counts equal the rows stored once
the tape has run out, and its connection shows subscribed."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import psycopg
import pytest

from sql.migrate import migrate
from tests.conftest import REPO_ROOT
from tests.e2e.livekit import FLOW, start, start_simulator, stop
from tests.flows.flowkit import BTC_TAPE
from tests.support.scrape import Scrape, labels, scrape

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        "serve_metrics" not in (REPO_ROOT / "app" / "entrypoints.py").read_text(),
        reason="the live flow's entry point does not start the metrics endpoint yet",
    ),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_live_flow_serves_its_metrics(pg_url: str, redis_url: str, tmp_path: Path) -> None:
    migrate(pg_url)
    port = free_port()
    log = tmp_path / "flow.log"
    simulator, okx = start_simulator(BTC_TAPE, "--start-offset", "600", "--speed", "10")
    flow = start(
        FLOW,
        {
            "DATABASE_URL": pg_url,
            "REDIS_URL": redis_url,
            "INSTRUMENTS": "BTC-USDT",
            "DATA_DIR": str(tmp_path / "data"),
            "METRICS__PORT": str(port),
            "FEED__FUTURE_TOLERANCE": "3600",
            **okx,
        },
        log,
    )
    scrapes: list[Scrape] = []
    stored: list[int] = []
    counted: list[float] = []

    def settled() -> bool:
        assert flow.poll() is None, log.read_text()[-3000:]
        try:
            scrapes.append(scrape(f"http://127.0.0.1:{port}/metrics"))
        except OSError:
            return False  # not listening yet
        with psycopg.connect(pg_url) as conn:
            row = conn.execute("SELECT count(*) FROM trades WHERE symbol = 'BTC-USDT'").fetchone()
        stored.append(int(row[0]) if row else 0)
        counted.append(scrapes[-1].value("tcp_trades_total", exchange="okx", symbol="BTC-USDT"))
        return (
            stored[-1] > 0 and counted[-1] == stored[-1] and len(stored) >= 3 and len(set(stored[-3:])) == 1
        )

    try:
        deadline = time.monotonic() + 120
        while not settled():
            assert time.monotonic() < deadline, (
                f"counted {counted[-3:]}, stored {stored[-3:]}:\n{log.read_text()[-2000:]}"
            )
            time.sleep(0.5)
    finally:
        stop(flow, signal.SIGINT)
        stop(simulator)
    last = scrapes[-1]
    assert last.series("tcp_connection_up")[labels(exchange="okx", connection="BTC-USDT")] == 1
    assert last.series("process_resident_memory_bytes")
    assert "Traceback" not in log.read_text()
