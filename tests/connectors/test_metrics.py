"""The metrics endpoint and the numbers the connectors give it, scraped over HTTP and checked against what
they did: the spool's files on disk, the messages a Redis outage dropped, a connection's state."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from app.embedded_redis import EmbeddedRedis
from connectors.database import DatabaseWriter
from connectors.metrics import serve_metrics, stop_metrics, watch_stream
from connectors.redis_fanout import RedisFanout
from market.types import Trade
from tests.support.live_samples import T0, candle, provisional
from tests.support.scrape import labels, scrape


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def metrics_url() -> Iterator[str]:
    stop_metrics()
    address = serve_metrics(free_port())
    assert address is not None
    yield f"http://{address[0]}:{address[1]}/metrics"
    stop_metrics()


def test_port_zero_is_off_and_a_process_serves_once() -> None:
    stop_metrics()
    try:
        assert serve_metrics(0) is None
        first = serve_metrics(free_port())
        assert first is not None and first[0] == "127.0.0.1"
        assert serve_metrics(free_port(), process=1) == first
        assert "# TYPE tcp_trades_total counter" in scrape(f"http://127.0.0.1:{first[1]}/metrics").text
    finally:
        stop_metrics()


def test_a_cluster_process_serves_on_the_port_plus_its_index() -> None:
    stop_metrics()
    port = free_port()
    try:
        assert serve_metrics(port - 2, process=2) == ("127.0.0.1", port)
    finally:
        stop_metrics()


def test_a_taken_port_is_reported_and_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    stop_metrics()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="connectors.metrics"):
            assert serve_metrics(port) is None
    assert [r.getMessage() for r in caplog.records if f":{port} " in r.getMessage()]


def trade(i: int) -> Trade:
    return Trade("okx", "BTC-USDT", i, Decimal("100.5"), Decimal("0.25"), "buy", T0)


def test_the_spool_gauges_are_the_files_on_disk(tmp_path: Path, metrics_url: str) -> None:
    unreachable = f"postgresql://tcp:x@127.0.0.1:{free_port()}/tcp"
    root = tmp_path / "database-worker7"
    writer = DatabaseWriter(unreachable, root, connect_timeout=1, spool_max_bytes=10_000_000)
    for batch in range(3):
        writer.write([trade(batch * 10 + i) for i in range(batch + 1)])
    spooled = list(root.glob("*/*.batch"))
    metrics = scrape(metrics_url)
    spool = labels(spool="database-worker7")
    assert len(spooled) == 3
    assert metrics.series("tcp_spool_batches")[spool] == len(spooled)
    assert metrics.series("tcp_spool_bytes")[spool] == sum(path.stat().st_size for path in spooled)
    assert metrics.series("tcp_spool_max_bytes")[spool] == 10_000_000
    writer.disconnect()


def test_redis_drops_are_counted_by_kind(tmp_path: Path, metrics_url: str) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    fanout = RedisFanout(url, retry_initial=30, retry_max=30)
    try:
        assert fanout.publish([candle(0)]) == 1
        server.stop()
        before = scrape(metrics_url)
        sent = [candle(1), candle(2), provisional(3, 1)]
        assert fanout.publish(sent) == 0
        for i in range(4):
            assert fanout.publish([candle(4 + i)]) == 0
        after = scrape(metrics_url)
    finally:
        fanout.close()
        server.stop()
    assert after.since(before, "tcp_redis_dropped_total", kind="candle") == 2 + 4
    assert after.since(before, "tcp_redis_dropped_total", kind="provisional") == 1


@dataclass
class Connection:
    """A connection as the metrics see one (``connectors.okx.stream.TradeStream``'s fields)."""

    name: str
    state: str = "connecting"
    last_message_at: datetime | None = None
    outbox: list[object] = field(default_factory=list)

    __hash__ = object.__hash__


def test_a_connection_shows_its_state_last_frame_and_queue(metrics_url: str) -> None:
    stream = Connection("ETH-USDT,SOL-USDT")
    watch_stream(stream, "okx")
    key = labels(exchange="okx", connection="ETH-USDT,SOL-USDT")
    first = scrape(metrics_url)
    assert first.series("tcp_connection_up")[key] == 0
    assert key not in first.series("tcp_connection_last_message_timestamp_seconds")

    heard = datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)
    stream.state, stream.last_message_at, stream.outbox = "subscribed", heard, [1, 2, 3]
    second = scrape(metrics_url)
    assert second.series("tcp_connection_up")[key] == 1
    assert second.series("tcp_connection_last_message_timestamp_seconds")[key] == heard.timestamp()
    assert second.series("tcp_source_queued_items")[key] == 3

    del stream  # a finished connection leaves with its object
    assert key not in scrape(metrics_url).series("tcp_connection_up")
