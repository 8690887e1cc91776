"""The Redis fan-out against a real redis-server: payloads, pub/sub + bounded streams, one pipeline per
batch, a real outage (server stopped and restarted), and a real Bytewax run through ``RedisSink``."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import bytewax.operators as op
import orjson
import pytest
import redis
from bytewax.dataflow import Dataflow, Stream
from bytewax.testing import TestingSource, cluster_main, run_main

from connectors.embedded_redis import EmbeddedRedis
from connectors.live_items import (
    CollectorHealth,
    HealthRules,
    ProvisionalCandle,
    ProvisionalThrottle,
    assess_health,
    health_issues,
)
from connectors.redis_fanout import (
    HealthReporter,
    LiveItem,
    LiveMessage,
    RedisFanout,
    RedisLiveReader,
    RedisSink,
    StreamBounds,
    candle_channel,
    encode,
    payload_of,
)
from market.types import Candle, IndicatorValue, Signal, Trade
from market.windowing import LateTrade

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def candle(i: int, timeframe: str = "1m", symbol: str = "BTC-USDT", price: str = "61234.5") -> Candle:
    length = {"1m": 1, "5m": 5}[timeframe]
    open_time = T0 + timedelta(minutes=length * i)
    p = Decimal(price)
    return Candle(
        exchange="okx",
        symbol=symbol,
        timeframe=timeframe,
        open_time=open_time,
        close_time=open_time + timedelta(minutes=length),
        open=p,
        high=p + 1,
        low=p - 1,
        close=p,
        volume=Decimal("0.00012345678901234567890"),
        quote_volume=Decimal("7.55955431372839"),
        trade_count=3,
        vwap=p,
        first_trade_id=100 + i,
        last_trade_id=102 + i,
    )


def provisional(minute: int, second: float, close: str = "1.5") -> ProvisionalCandle:
    open_time = T0 + timedelta(minutes=minute)
    p = Decimal(close)
    return ProvisionalCandle(
        exchange="okx",
        symbol="BTC-USDT",
        timeframe="1m",
        open_time=open_time,
        close_time=open_time + timedelta(minutes=1),
        open=p,
        high=p,
        low=p,
        close=p,
        volume=Decimal(1),
        quote_volume=p,
        trade_count=1,
        vwap=p,
        as_of=open_time + timedelta(seconds=second),
    )


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


# -- payloads (pure) ------------------------------------------------------------------------------
def test_candle_payload_is_labelled_by_close_and_keeps_decimals_exact() -> None:
    kind, channel, payload = payload_of(candle(0))
    raw = orjson.loads(encode(payload))
    assert (kind, channel) == ("candle", "tcp:candles:okx:BTC-USDT:1m")
    assert raw["time"] == "2024-03-01T12:01:00Z" and raw["open_time"] == "2024-03-01T12:00:00Z"
    assert raw["volume"] == "0.00012345678901234567890" and raw["quote_volume"] == "7.55955431372839"
    assert raw["open"] == "61234.5" and raw["high"] == "61235.5" and raw["trade_count"] == 3
    assert raw["provisional"] is False and raw["kind"] == "candle"
    # A non-UTC aware time is published in UTC; exponent decimals are written plainly.
    shifted = Candle(
        **{
            **{f: getattr(candle(0), f) for f in Candle.__dataclass_fields__},
            "close_time": T0.astimezone(timezone(timedelta(hours=2))),
            "volume": Decimal("1E+2"),
        }
    )
    raw = orjson.loads(encode(payload_of(shifted)[2]))
    assert raw["time"] == "2024-03-01T12:00:00Z" and raw["volume"] == "100"


def test_every_kind_has_its_channel_and_shape() -> None:
    trade = Trade(
        exchange="okx",
        symbol="BTC-USDT",
        trade_id=9,
        price=Decimal("61000.1"),
        size=Decimal("0.002"),
        side="sell",
        ts_event=T0 + timedelta(seconds=59, milliseconds=500),
        ts_recv=T0 + timedelta(minutes=1, seconds=3),
    )
    late = LateTrade(
        trade=trade, candle_close=T0 + timedelta(minutes=1), watermark=T0 + timedelta(minutes=1, seconds=1)
    )
    value = IndicatorValue(
        exchange="okx",
        symbol="BTC-USDT",
        timeframe="5m",
        time=T0,
        indicator="ema_20",
        values={"ema": 61000.25},
    )
    signal = Signal(
        exchange="okx",
        symbol="BTC-USDT",
        timeframe="5m",
        time=T0,
        strategy="cross",
        action="buy",
        reason="ema crossed",
        values={"fast": 2.0, "slow": 1.0},
    )
    health = CollectorHealth(collector="okx", time=T0, status="running", should_be_running=True)
    items: list[LiveItem] = [provisional(0, 10), late, value, signal, health]
    got = {kind: (channel, orjson.loads(encode(p))) for kind, channel, p in map(payload_of, items)}
    assert got["provisional"][0] == "tcp:provisional:okx:BTC-USDT:1m"
    assert got["provisional"][1]["provisional"] is True
    assert got["provisional"][1]["time"] == "2024-03-01T12:01:00Z"
    assert got["provisional"][1]["as_of"] == "2024-03-01T12:00:10Z"
    assert got["late"][0] == "tcp:late:okx:BTC-USDT"
    assert got["late"][1]["time"] == "2024-03-01T12:00:59.500000Z"
    assert got["late"][1]["lateness_seconds"] == 1.5 and got["late"][1]["price"] == "61000.1"
    assert got["late"][1]["candle_close"] == "2024-03-01T12:01:00Z"
    assert got["indicator"] == (
        "tcp:indicators:okx:BTC-USDT:5m",
        {
            "kind": "indicator",
            "exchange": "okx",
            "symbol": "BTC-USDT",
            "timeframe": "5m",
            "time": "2024-03-01T12:00:00Z",
            "indicator": "ema_20",
            "values": {"ema": 61000.25},
        },
    )
    assert got["signal"][0] == "tcp:signals:okx:BTC-USDT:5m"
    assert got["signal"][1]["action"] == "buy" and got["signal"][1]["values"] == {"fast": 2.0, "slow": 1.0}
    assert got["health"][0] == "tcp:health" and got["health"][1]["last_message_time"] is None
    with pytest.raises(TypeError):
        payload_of(trade)  # type: ignore[arg-type]


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
        deadline = time.monotonic() + 2
        while not received and time.monotonic() < deadline:
            time.sleep(0.01)
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
    time.sleep(0.25)  # the backoff passes
    with RedisLiveReader(url) as reader, reader.subscribe() as sub:
        assert fanout.publish([candle(4)]) == 1
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


def test_health_reporter_publishes_periodically_with_issues(url: str, reader: RedisLiveReader) -> None:
    ticks = iter(range(1, 1000))

    def snapshot() -> CollectorHealth:
        n = next(ticks)
        return health(
            time=T0 + timedelta(seconds=n),
            messages_received=1000 + 100 * n,
            errors=10 * n,
            reconnect_attempts=0,
        )

    with reader.subscribe(["tcp:health"]) as sub:
        reporter = HealthReporter(url, snapshot, interval=0.05).start()
        first, second = sub.get(timeout=2), sub.get(timeout=2)
        reporter.stop()
    assert first is not None and second is not None
    assert first.payload["is_healthy"] is True  # 10 errors in 1100 messages since start
    # 10 of the 100 messages since the previous snapshot failed.
    assert second.payload["is_healthy"] is False
    assert second.payload["issues"] == ["error rate 10.0% over 100 messages (limit 5.0%)"]
    latest = reader.latest_health()["okx"]
    assert reporter.last is not None and latest["time"] == reporter.last.time  # the final snapshot


def test_async_subscription(
    url: str, reader: RedisLiveReader, fanout_for: Callable[..., RedisFanout]
) -> None:
    fanout = fanout_for(url)

    async def first_message() -> LiveMessage:
        messages = reader.asubscribe(["tcp:signals:*"])
        pending = asyncio.ensure_future(anext(messages))
        signal = Signal(
            exchange="okx",
            symbol="BTC-USDT",
            timeframe="1m",
            time=T0,
            strategy="s",
            action="flat",
            reason="r",
            values={},
        )
        while not pending.done():  # until the subscription is in place
            fanout.publish([signal])
            await asyncio.sleep(0.02)
        await messages.aclose()
        return pending.result()

    message = asyncio.run(first_message())
    assert message.channel == "tcp:signals:okx:BTC-USDT:1m"
    assert message.payload["time"] == T0


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


# -- pure helpers ---------------------------------------------------------------------------------
def test_throttle_limits_rate_and_keeps_the_final_state() -> None:
    throttle = ProvisionalThrottle(max_per_second=2)
    sent = []
    for tenth in range(0, 30):  # 10 updates per second for 3 s of minute 0
        sent += throttle.offer(provisional(0, tenth / 10, close=str(tenth)))
    assert [p.as_of.second + p.as_of.microsecond / 1e6 for p in sent] == [0, 0.5, 1.0, 1.5, 2.0, 2.5]
    # The last state (close 29 at 2.9 s) is held, and comes out when the next candle starts...
    out = throttle.offer(provisional(1, 0.1, close="100"))
    assert [p.close for p in out] == [Decimal(29), Decimal(100)]
    # ...or when its slot comes.
    assert throttle.offer(provisional(1, 0.2, close="101")) == []
    assert throttle.due(T0 + timedelta(minutes=1, seconds=0.3)) == []
    assert [p.close for p in throttle.due(T0 + timedelta(minutes=1, seconds=0.6))] == [Decimal(101)]
    assert throttle.drain() == []
    # Series are independent.
    other = ProvisionalCandle(
        **{
            **{f: getattr(provisional(1, 0.3), f) for f in ProvisionalCandle.__dataclass_fields__},
            "symbol": "ETH-USDT",
        }
    )
    assert throttle.offer(other) == [other]


def health(**changes: object) -> CollectorHealth:
    base: dict[str, object] = dict(
        collector="okx",
        time=T0,
        status="running",
        should_be_running=True,
        messages_received=1000,
        messages_processed=1000,
        errors=0,
        uptime_seconds=600.0,
        last_message_time=T0 - timedelta(seconds=1),
    )
    return CollectorHealth(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, []),
        ({"last_message_time": T0 - timedelta(seconds=61)}, ["no message for 61 s"]),
        (
            {
                "last_message_time": T0 - timedelta(seconds=61),
                "should_be_running": False,
                "status": "stopped",
            },
            [],
        ),
        ({"last_message_time": None, "uptime_seconds": 30.0}, []),
        ({"last_message_time": None, "uptime_seconds": 90.0}, ["no message received in 90 s"]),
        ({"status": "reconnecting"}, ["status is reconnecting but the collector should be running"]),
        ({"status": "error", "last_error": "boom"}, ["status is error: boom"]),
        ({"errors": 50}, []),
        ({"errors": 51}, ["error rate 5.1% over 1000 messages"]),
        ({"reconnect_attempts": 4}, []),
        ({"reconnect_attempts": 10}, ["reconnect storm: 10 reconnect attempts in 600 s"]),
        ({"reconnect_attempts": 10, "uptime_seconds": 3600.0}, []),
        ({"messages_processed": 0, "messages_received": 20_001}, ["backlog of 20001"]),
    ],
)
def test_health_issues(changes: dict[str, object], expected: list[str]) -> None:
    issues = health_issues(health(**changes))
    assert len(issues) == len(expected), issues
    for issue, start in zip(issues, expected, strict=True):
        assert issue.startswith(start), issue
    assessed = assess_health(health(**changes))
    assert assessed.is_healthy == (not expected) and list(assessed.issues) == list(issues)


def test_health_rates_use_the_previous_snapshot() -> None:
    previous = health(
        messages_received=100_000, errors=10, reconnect_attempts=2, time=T0 - timedelta(minutes=1)
    )
    # Lifetime error rate is low, but 100 of the last 1000 messages failed; 6 reconnects in one minute.
    now = health(
        messages_received=101_000,
        messages_processed=101_000,
        errors=110,
        reconnect_attempts=8,
        uptime_seconds=36_000.0,
    )
    assert health_issues(now) == ()
    issues = health_issues(now, HealthRules(), previous)
    assert [i.split(" ")[0] for i in issues] == ["error", "reconnect"]
