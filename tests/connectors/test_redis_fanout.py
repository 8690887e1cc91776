"""The Redis fan-out against a real redis-server: pub/sub + bounded streams, one pipeline per batch, a
real outage (server stopped and restarted), the reader's catch-up and subscriptions, and a real Bytewax
run through ``RedisSink``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path

import bytewax.operators as op
import pytest
import redis
from bytewax.dataflow import Dataflow, Stream
from bytewax.testing import TestingSource, cluster_main, run_main

from app.embedded_redis import EmbeddedRedis
from connectors.redis_codec import LiveItem, bot_channel, candle_channel
from connectors.redis_fanout import RedisFanout, RedisSink, StreamBounds
from connectors.redis_reader import LiveMessage, RedisLiveReader
from market.bots import BotUpdate
from market.health import CollectorHealth
from market.types import Candle
from tests.support.live_samples import T0, candle, provisional, until


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "redis") as embedded:
        yield embedded


@pytest.fixture
def url(server: EmbeddedRedis) -> str:
    assert server.url is not None
    return server.url


@pytest.fixture
def client(url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(url)
    yield c
    c.close()


@pytest.fixture
def reader(url: str) -> Iterator[RedisLiveReader]:
    with RedisLiveReader(url) as r:
        yield r


@pytest.fixture
def fanout_for() -> Iterator[Callable[..., RedisFanout]]:
    made: list[RedisFanout] = []

    def make(url: str, **kwargs: object) -> RedisFanout:
        made.append(RedisFanout(url, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for fanout in made:
        fanout.close()


# -- pub/sub, streams, pipelines ------------------------------------------------------------------
def test_subscriber_receives_and_late_client_catches_up(
    url: str, reader: RedisLiveReader, fanout_for: Callable[..., RedisFanout]
) -> None:
    fanout = fanout_for(url)
    with reader.subscribe(["tcp:candles:okx:*"]) as sub:
        assert fanout.publish([candle(0), candle(1), candle(0, "5m")]) == 3
        got = [sub.get(timeout=2) for _ in range(3)]
    assert [(m.channel, m.payload["time"]) for m in got if m] == [
        ("tcp:candles:okx:BTC-USDT:1m", T0 + timedelta(minutes=1)),
        ("tcp:candles:okx:BTC-USDT:1m", T0 + timedelta(minutes=2)),
        ("tcp:candles:okx:BTC-USDT:5m", T0 + timedelta(minutes=5)),
    ]
    first = got[0]
    assert first is not None and first.payload["volume"] == Decimal("0.00012345678901234567890")
    assert first.payload["time"].tzinfo is not None
    history = reader.catch_up(candle_channel("okx", "BTC-USDT", "1m"), count=10)
    assert [m.payload for m in history] == [m.payload for m in got[:2] if m]
    assert all(m.stream_id for m in history)


def test_threaded_iteration_ends_on_close_from_another_thread(
    url: str, reader: RedisLiveReader, fanout_for: Callable[..., RedisFanout]
) -> None:
    fanout = fanout_for(url)
    for _ in range(5):
        sub = reader.subscribe(["tcp:candles:*"])
        received: list[LiveMessage] = []
        thread = threading.Thread(target=received.extend, args=(sub,))
        thread.start()
        fanout.publish([candle(0)])
        until(partial(bool, received), timeout=2, what="a message")
        sub.close()
        thread.join(timeout=2)
        assert not thread.is_alive() and len(received) == 1


def test_streams_are_bounded(
    url: str, client: redis.Redis, reader: RedisLiveReader, fanout_for: Callable[..., RedisFanout]
) -> None:
    exact = fanout_for(url, bounds=StreamBounds(candles={"1m": 50}, approximate=False))
    for start in range(0, 300, 100):
        exact.publish([candle(i) for i in range(start, start + 100)])
    channel = candle_channel("okx", "BTC-USDT", "1m")
    assert client.xlen(channel) == 50
    assert [m.payload["time"] for m in reader.catch_up(channel, 2)] == [
        T0 + timedelta(minutes=299),
        T0 + timedelta(minutes=300),
    ]
    approximate = fanout_for(url, bounds=StreamBounds(candles={"5m": 200}))
    for start in range(0, 2000, 100):
        approximate.publish([candle(i, "5m") for i in range(start, start + 100)])
    assert 200 <= client.xlen(candle_channel("okx", "BTC-USDT", "5m")) <= 300  # trimmed by whole nodes


def test_bot_updates_are_published_on_their_bounded_stream(
    url: str, client: redis.Redis, reader: RedisLiveReader, fanout_for: Callable[..., RedisFanout]
) -> None:
    fanout = fanout_for(url, bounds=StreamBounds(bots=5, approximate=False))
    updates = [
        BotUpdate("ema-btc", T0 + timedelta(minutes=i), 10_000.0 + i, 10.0, 0.5, 100.0 + i, "running")
        for i in range(12)
    ]
    assert fanout.publish(updates) == 12
    assert fanout.stats.published["bot"] == 12 and not fanout.stats.dropped
    assert client.xlen(bot_channel("ema-btc")) == 5
    last = reader.catch_up(bot_channel("ema-btc"), 1)[0].payload
    assert (last["time"], last["equity"], last["state"]) == (T0 + timedelta(minutes=11), 10_011.0, "running")


def test_a_batch_is_one_pipeline(
    url: str, client: redis.Redis, fanout_for: Callable[..., RedisFanout]
) -> None:
    fanout = fanout_for(url)
    fanout.connect()

    def counters() -> tuple[int, int, int]:
        stats = client.info("stats")
        commands = client.info("commandstats")
        return (
            stats["total_reads_processed"],
            commands.get("cmdstat_publish", {}).get("calls", 0),
            commands.get("cmdstat_xadd", {}).get("calls", 0),
        )

    reads0, publish0, xadd0 = counters()
    assert fanout.publish([candle(i) for i in range(10)]) == 10
    reads1, publish1, xadd1 = counters()
    assert (publish1 - publish0, xadd1 - xadd0) == (10, 10)
    # 20 commands arrived in at most 3 socket reads (1 is the INFO pair of the second counters() call);
    # one round trip per command would need 20.
    assert reads1 - reads0 <= 4
    assert fanout.stats.pipelines == 1


def test_a_refused_message_is_counted_and_the_rest_published(
    url: str, client: redis.Redis, fanout_for: Callable[..., RedisFanout]
) -> None:
    client.set(candle_channel("okx", "ETH-USDT", "1m"), "not a stream")  # XADD now fails: WRONGTYPE
    fanout = fanout_for(url)
    assert fanout.publish([candle(0, symbol="ETH-USDT"), candle(0), candle(1)]) == 2
    assert fanout.stats.dropped["candle"] == 1 and fanout.stats.published["candle"] == 2
    assert fanout.stats.last_error is not None and "WRONGTYPE" in fanout.stats.last_error


def test_outage_drops_and_counts_then_recovers(
    server: EmbeddedRedis, url: str, fanout_for: Callable[..., RedisFanout], caplog: pytest.LogCaptureFixture
) -> None:
    fanout = fanout_for(url, retry_initial=0.2, retry_max=0.2)
    assert fanout.publish([candle(0)]) == 1
    server.stop()

    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="connectors.redis_fanout"):
        assert fanout.publish([candle(1), candle(2), provisional(3, 1)]) == 0  # does not raise
        for _ in range(100):
            assert fanout.publish([candle(3)]) == 0  # within the backoff: not even tried
    assert time.monotonic() - began < 1.0  # never blocks the flow
    assert fanout.stats.dropped == {"candle": 102, "provisional": 1}
    assert fanout.stats.failures == 1
    assert len(caplog.records) == 1  # logging is rate limited

    server.start()
    with RedisLiveReader(url) as reader, reader.subscribe() as sub:
        # Published once the backoff has passed (attempts within it are dropped, not sent).
        until(lambda: fanout.publish([candle(4)]) == 1, what="publishing after the outage")
        message = sub.get(timeout=2)
        assert message is not None and message.payload["time"] == T0 + timedelta(minutes=5)
        history = reader.catch_up(candle_channel("okx", "BTC-USDT", "1m"))
    # The stream survived the restart; what was dropped during the outage is not in it.
    assert [m.payload["time"] for m in history] == [T0 + timedelta(minutes=1), T0 + timedelta(minutes=5)]
    assert fanout.stats.reconnects == 1 and fanout.stats.published["candle"] == 2


def test_health_is_published_and_kept_as_latest(
    url: str, reader: RedisLiveReader, fanout_for: Callable[..., RedisFanout]
) -> None:
    fanout = fanout_for(url)
    snapshots = [
        CollectorHealth(
            collector=name,
            time=T0 + timedelta(seconds=s),
            status="running",
            should_be_running=True,
            messages_received=s,
            uptime_seconds=s,
        )
        for s in (10, 20)
        for name in ("okx", "replay")
    ]
    fanout.publish(snapshots)
    latest = reader.latest_health()
    assert sorted(latest) == ["okx", "replay"]
    assert latest["okx"]["messages_received"] == 20 and latest["okx"]["time"] == T0 + timedelta(seconds=20)
    assert len(reader.catch_up("tcp:health")) == 4
    # The latest snapshot expires: a collector that stops reporting is not shown as current later.
    ttl = redis.Redis.from_url(url).ttl("tcp:health:latest:okx")
    assert 25 <= ttl <= 30


# -- a real Bytewax run ---------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_bytewax_flow_publishes_through_redis_sink(url: str, reader: RedisLiveReader, workers: int) -> None:
    items: list[LiveItem] = [candle(i) for i in range(30)]
    flow = Dataflow("redis_sink_test")
    stream: Stream[LiveItem] = op.input("candles", flow, TestingSource(items, batch_size=7))
    op.output("redis", stream, RedisSink(url))
    with reader.subscribe(["tcp:candles:*"]) as sub:
        if workers == 1:
            run_main(flow)
        else:
            cluster_main(flow, [], 0, worker_count_per_proc=workers)
        received = []
        while (message := sub.get(timeout=1)) is not None:
            received.append(message.payload["time"])
    expected = [c.time for c in items if isinstance(c, Candle)]
    assert sorted(received) == expected
    assert [m.payload["time"] for m in reader.catch_up(candle_channel("okx", "BTC-USDT", "1m"))] == expected
