"""The chart's store and view and the health view without a browser, on a real database filled by the
real dataflow and a real Redis: the stored series, live candles streamed with a bound, reloads, the
database alone, and messages (not tracebacks) when a server is down."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.embedded_redis import EmbeddedRedis
from connectors.database import DatabaseSink
from connectors.redis_codec import candle_channel, provisional_channel
from connectors.redis_fanout import RedisFanout
from connectors.redis_reader import LiveMessage
from dashboards import chart_store
from dashboards.chart_store import ChartStore
from dashboards.data import (
    DashboardData,
    DatabaseUnavailable,
    LiveHub,
    ReadOnlyDatabase,
    series_channels,
)
from dashboards.health import HealthView
from dashboards.shaping import instrument_list
from dashboards.views import CandleChart
from market.provisional import ProvisionalCandle
from market.timeframes import TIMEFRAMES
from sql import queries
from sql.migrate import migrate
from tests.dashboards.chart_kit import CONFIG, MINUTE, T0, candle, eventually, payload
from tests.dashboards.collector_table import put_collector
from tests.flows.flowkit import BTC_TAPE, run_replay
from tests.support.browser import free_port


def chart_of(data: DashboardData, instruments: list[str], **params: Any) -> tuple[ChartStore, CandleChart]:
    """A session's chart: its store (the series and its data) and the view of it."""
    store = ChartStore(data, instruments, CONFIG, **params)
    return store, CandleChart(store)


# -- real servers -----------------------------------------------------------------------------------------


@pytest.fixture
def filled(pg_url: str, tmp_path: Path) -> str:
    migrate(pg_url)
    run_replay([BTC_TAPE], database=DatabaseSink(pg_url, tmp_path / "spool"), indicators=CONFIG)
    return pg_url


@pytest.fixture
def data(filled: str, redis_url: str) -> Iterator[DashboardData]:
    shared = DashboardData.connect(filled, redis_url)
    eventually(lambda: shared.live.status.connected)
    try:
        yield shared
    finally:
        shared.close()


def test_the_dashboard_can_never_write(filled: str) -> None:
    db = ReadOnlyDatabase(filled)
    try:
        with pytest.raises(DatabaseUnavailable, match="refused"):
            db.run(lambda conn: conn.execute("DELETE FROM candles_1m"))
        assert len(db.candles("BTC-USDT", "1m", 100)) > 0
    finally:
        db.close()


def test_chart_shows_the_stored_series_then_streams_live_candles_with_a_bound(
    data: DashboardData, filled: str, redis_url: str
) -> None:
    with psycopg.connect(filled) as conn:
        stored = queries.latest_candles(conn, "okx", "BTC-USDT", "1m", 1000)
        stored_5m = queries.latest_candles(conn, "okx", "BTC-USDT", "5m", 1000)
    store, chart = chart_of(data, ["BTC-USDT", "XRP-ETH"], max_rows=len(stored) + 3)
    source = store.sources["candles"]
    assert source.data["close_text"] == [format(r["close"], "f") for r in stored]
    assert store.indicators == ["ema_fast", "bbands", "rsi", "macd"]
    assert len(store.sources["ema_fast"].data["time"]) == len(stored) - 2  # EMA(3) warm-up: 2 candles
    assert store.waiting == ["macd"]  # too few candles for MACD: its panel waits for a value
    assert "Candles: 11" in chart.summary.object

    fanout, last = RedisFanout(redis_url), stored[-1]["time"]
    fanout.publish([candle(last + i * MINUTE, f"{60000 + i}") for i in range(1, 6)])
    fanout.publish(
        [
            ProvisionalCandle(
                "okx",
                "BTC-USDT",
                "1m",
                last + 5 * MINUTE,
                last + 6 * MINUTE,
                *(Decimal(7),) * 4,
                Decimal(1),
                Decimal(7),
                1,
                None,
                last + 5.5 * MINUTE,
            )
        ]
    )
    eventually(lambda: len(store.queue or []) == 6)
    store.poll_live()
    assert len(source.data["time"]) == len(stored) + 3  # rolled over: the oldest two dropped
    assert source.data["close_text"][-1] == "60005"
    assert store.sources["provisional"].data["close_text"] == ["7"]
    assert 'data-testid="provisional-close">7<' in chart.summary.object

    store.timeframe = "5m"  # a new series: history from the database again, live channels switched
    assert store.sources["candles"].data["close_text"] == [format(r["close"], "f") for r in stored_5m]
    minute = {candle_channel("okx", "BTC-USDT", "1m"), provisional_channel("okx", "BTC-USDT", "1m")}
    assert store.queue is not None and store.queue.channels == frozenset(
        {*series_channels("BTC-USDT", "5m").values(), *minute}  # and its 1m parts, for the live candle
    )
    # The in-progress 5m candle, from its 1m parts: stored and live final 1m candles and the provisional.
    close = TIMEFRAMES["5m"].close_of(last + 5 * MINUTE)
    parts = {r["time"]: r["trade_count"] for r in stored if r["time"] > close - 5 * MINUTE}
    parts |= {last + i * MINUTE: 3 for i in range(1, 6) if last + i * MINUTE > close - 5 * MINUTE}
    shown = store.sources["provisional"].data
    assert shown["close_text"] == ["7"] and shown["time"] == [close.timestamp() * 1000]
    assert shown["trade_count"] == [sum(parts.values()) + 1] and stored_5m[-1]["time"] < close
    assert "from its 1m candles" in chart.summary.object
    store.close()
    assert data.live.sessions == 0


def test_chart_reloads_when_its_queue_overflowed(data: DashboardData, redis_url: str) -> None:
    store, chart = chart_of(data, ["BTC-USDT"])
    n = len(store.sources["candles"].data["time"])
    assert store.queue is not None
    for _ in range(store.queue.maxlen + 1):
        store.queue.put(LiveMessage(candle_channel("okx", "BTC-USDT", "1m"), payload(T0, "1")))
    store.poll_live()
    assert (
        not store.queue.overflowed
        and len(store.queue) == 0
        and len(store.sources["candles"].data["time"]) == n
    )


def test_health_view_reports_collectors_and_servers(data: DashboardData, filled: str) -> None:
    now = datetime.now(UTC)
    put_collector(filled, "okx", "running", now, now - MINUTE, messages_received=10, uptime_seconds=5.0)
    view = HealthView(data, window="all time")
    assert "Database: ok" in view.status.object and "Redis: ok" in view.status.object
    assert "<td>okx</td>" in view.collectors.object and "<td>2.0</td>" in view.collectors.object
    assert f"Collector okx: running since {now - MINUTE:%H:%M:%S} UTC." in view.collector_line.object
    assert "No gap recorded." in view.gaps.object


def test_servers_down_give_messages_not_tracebacks(tmp_path: Path) -> None:
    dead_db = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    data = DashboardData(
        ReadOnlyDatabase(dead_db, timeout=1.0), LiveHub(f"unix://{tmp_path}/none.sock").start()
    )
    try:
        store, chart = chart_of(data, ["BTC-USDT"])
        assert chart.alert.visible and "database is unreachable" in chart.alert.object
        assert store.sources["candles"].data["time"] == []
        store.poll_live()
        assert "Redis is unreachable" in chart.summary.object and "Candles: 0" in chart.summary.object
        view = HealthView(data)
        assert "Database: unavailable: The database is unreachable" in view.status.object
        assert "Redis: unavailable: Redis is unreachable" in view.status.object
        assert "Traceback" not in view.status.object + chart.summary.object + chart.alert.object
    finally:
        data.close()


def test_the_chart_runs_on_the_database_alone(filled: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = DashboardData.connect(filled, None)
    now = datetime.now(UTC)
    put_collector(
        filled, "okx:public-0", "reconnecting", now, now - MINUTE, "gaierror: Name or service not known"
    )
    try:
        assert data.db.symbols() == ["BTC-USDT"] and data.live.off_reason() == "REDIS_URL is not set"
        store, chart = chart_of(data, instrument_list(["ETH-USDT"], data.db.symbols()), symbol="BTC-USDT")
        assert store.param.symbol.objects == ["ETH-USDT", "BTC-USDT"]
        assert len(store.sources["candles"].data["time"]) == 11 and not chart.notice.visible
        store.poll_live()
        assert "Live: live updates off (REDIS_URL is not set)" in chart.summary.object
        last = datetime.fromtimestamp(store.sources["candles"].data["time"][-1] / 1000, UTC)
        with psycopg.connect(filled, autocommit=True) as conn:  # as the flow stores the next candle
            conn.execute(
                "INSERT INTO candles_1m (exchange, symbol, time, open, high, low, close, volume,"
                " quote_volume, trade_count, vwap, first_trade_id, last_trade_id)"
                " VALUES ('okx', 'BTC-USDT', %s, 1, 2, 1, 2, 1, 2, 1, 2, 10000001, 10000001)",
                (last + MINUTE,),
            )
        monkeypatch.setattr(chart_store, "CHECK_SECONDS", 0.0)
        store.poll_live()  # without Redis the chart looks for newly stored candles
        assert (
            store.sources["candles"].data["close_text"][-1] == "2" and "Candles: 12" in chart.summary.object
        )
        since = f"reconnecting since {now - MINUTE:%H:%M:%S} UTC: gaierror: Name or service not known"
        assert f"Collector okx:public-0: {since}." in chart.summary.object

        store.symbol = "ETH-USDT"  # configured, never stored
        assert (
            chart.notice.visible
            and (
                f"No candles yet for ETH-USDT 1m. The OKX collector (okx:public-0) is {since}. "
                "It keeps retrying; <code>python3 tcp.py up --offline</code> runs against the bundled "
                "simulator."
            )
            in chart.notice.object
        )

        view = HealthView(data)
        assert "Redis: not configured (REDIS_URL is not set); live updates off" in view.status.object
        assert f"Collector okx:public-0: {since}." in view.collector_line.object
        put_collector(filled, "okx:public-0", "running", now - timedelta(seconds=31), now - MINUTE)
        view.refresh()
        assert "not reporting (last seen" in view.collectors.object
        assert (
            f"not reporting (last seen {now - timedelta(seconds=31):%H:%M:%S} UTC)"
            in view.collector_line.object
        )
        store.close()
    finally:
        data.close()


def test_a_session_started_while_redis_was_down_follows_it_once_it_answers(
    filled: str, tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    server.stop()
    data = DashboardData(ReadOnlyDatabase(filled), LiveHub(url, retry_max=0.5).start())
    try:
        store, chart = chart_of(data, ["BTC-USDT"])

        def says_off() -> bool:
            store.poll_live()
            return "Live: live updates off (Redis is unreachable" in chart.summary.object

        eventually(says_off)
        last = datetime.fromtimestamp(store.sources["candles"].data["time"][-1] / 1000, UTC)
        assert server.start() == url
        eventually(lambda: data.live.status.connected)
        store.poll_live()  # reloads (the subscription is new), then follows
        RedisFanout(url).publish([candle(last + MINUTE, "70000")])
        eventually(lambda: len(store.queue or []) == 1)
        store.poll_live()
        assert store.sources["candles"].data["close_text"][-1] == "70000"
        assert "Live: following Redis" in chart.summary.object
        store.close()
    finally:
        data.close()
        server.stop()


def test_a_chart_recovers_once_the_database_answers(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = DashboardData.connect(pg_url, None)
    try:
        store, chart = chart_of(data, ["BTC-USDT"])
        assert chart.alert.visible and "no TCP schema yet" in chart.alert.object and not chart.notice.visible
        migrate(pg_url)
        run_replay([BTC_TAPE], database=DatabaseSink(pg_url, tmp_path / "spool"), indicators=CONFIG)
        monkeypatch.setattr(chart_store, "CHECK_SECONDS", 0.0)
        store.poll_live()
        assert not chart.alert.visible and len(store.sources["candles"].data["time"]) == 11
        store.close()
    finally:
        data.close()
