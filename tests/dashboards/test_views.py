"""The dashboard's logic without a browser: data shaping, the chart and health views on a real database
filled by the real dataflow and a real Redis, bounded live buffers, and messages (not tracebacks) when a
server is down."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from configs.indicators import parse_indicator_config
from connectors.database import DatabaseSink
from connectors.embedded_redis import EmbeddedRedis
from connectors.live_items import ProvisionalCandle, candle_channel, provisional_channel
from connectors.redis_fanout import LiveMessage, RedisFanout
from dashboards import views
from dashboards.collectors import CollectorState, empty_message
from dashboards.data import (
    DashboardData,
    DatabaseUnavailable,
    LiveHub,
    LiveQueue,
    ReadOnlyDatabase,
    candle_frame,
    series_channels,
)
from dashboards.health import collector_rows, count_table, gap_summary, message_rate
from dashboards.shaping import (
    COLORS,
    MinuteParts,
    chart_columns,
    configured_indicators,
    default_selection,
    in_progress,
    indicator_columns,
    instrument_list,
    placement,
    price_at,
    sort_live,
)
from dashboards.views import CandleChart, HealthView
from market.timeframes import TIMEFRAMES
from market.types import Candle
from sql import queries
from sql.migrate import migrate
from tests.dashboards.collector_table import put_collector
from tests.flows.flowkit import BTC_TAPE, run_replay
from tests.support.browser import free_port

MINUTE = timedelta(minutes=1)
T0 = datetime(2024, 8, 9, 0, 5, tzinfo=UTC)
CONFIG = parse_indicator_config(
    {
        "profiles": [
            {
                "instruments": "*",
                "timeframes": ["1m", "5m"],
                "indicators": [
                    {"indicator": "EMA", "label": "ema_fast", "params": {"timeperiod": 3}},
                    {"indicator": "BBANDS", "params": {"timeperiod": 5}},
                    {"indicator": "RSI", "params": {"timeperiod": 3}},
                    {"indicator": "ATR", "params": {"timeperiod": 3}},
                ],
                "strategies": [{"strategy": "ema_crossover", "params": {"fast": 2, "slow": 4}}],
            },
            {"instruments": ["BTC-USDT"], "timeframes": ["1m"], "indicators": [{"indicator": "MACD"}]},
        ]
    }
)


def payload(close_time: datetime, close: str, kind: str = "candle", **extra: Any) -> dict[str, Any]:
    price = Decimal(close)
    return {
        "kind": kind,
        "exchange": "okx",
        "symbol": "BTC-USDT",
        "timeframe": "1m",
        "time": close_time,
        "open_time": close_time - MINUTE,
        "open": price,
        "high": price,
        "low": price,
        "close": price,
        "volume": Decimal("0.5"),
        "quote_volume": price / 2,
        "trade_count": 3,
        "vwap": price,
        **extra,
    }


def candle(close_time: datetime, close: str) -> Candle:
    p = Decimal(close)
    return Candle(
        "okx",
        "BTC-USDT",
        "1m",
        close_time - MINUTE,
        close_time,
        p,
        p + 1,
        p - 1,
        p,
        Decimal("0.5"),
        p / 2,
        3,
        p,
        1,
        3,
    )


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# -- pure shaping ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("indicator", "output", "where"),
    [
        ("EMA", "value", "overlay"),
        ("BBANDS", "upperband", "overlay"),
        ("KELTNER", "lower", "overlay"),
        ("DONCHIAN", "middle", "overlay"),
        ("vwap", "value", "overlay"),
        ("SUPERTREND", "supertrend", "overlay"),
        ("SUPERTREND", "direction", "panel"),
        ("RSI", "value", "panel"),
        ("MACD", "macdhist", "panel"),
        ("ATR", "value", "panel"),
        ("OBV", "value", "panel"),
    ],
)
def test_overlay_or_sub_panel(indicator: str, output: str, where: str) -> None:
    assert placement(indicator, output) == where


def test_indicators_offered_are_those_configured_for_the_series() -> None:
    btc = configured_indicators(CONFIG, "BTC-USDT", "1m")
    assert btc == {"ema_fast": "EMA", "bbands": "BBANDS", "rsi": "RSI", "atr": "ATR", "macd": "MACD"}
    assert "macd" not in configured_indicators(CONFIG, "XRP-ETH", "1m")
    assert configured_indicators(CONFIG, "BTC-USDT", "1h") == {}
    assert default_selection(btc) == ["ema_fast", "bbands", "rsi", "macd"]


def test_chart_columns_place_each_candle_at_its_close_with_exact_text() -> None:
    rows = [
        payload(T0, "100.10"),
        {**payload(T0 + MINUTE, "99.5"), "open": Decimal("100.10"), "high": Decimal("100.2")},
        {**payload(T0 + 2 * MINUTE, "99.5"), "trade_count": 0, "volume": Decimal("0")},
    ]
    columns = chart_columns(candle_frame(rows), "1m")
    assert columns["time"] == [T0.timestamp() * 1000 + i * 60_000 for i in range(3)]
    assert columns["close_text"] == ["100.10", "99.5", "99.5"] and columns["high_text"][1] == "100.2"
    assert columns["color"] == [COLORS["up"], COLORS["down"], COLORS["flat"]]
    assert (columns["body_top"][1], columns["body_bottom"][1]) == (100.10, 99.5)
    assert columns["interval"][0] == "[2024-08-09 00:04, 2024-08-09 00:05) UTC"
    assert set(chart_columns(candle_frame(rows[:1]), "1m", provisional=True)["state"]) == {
        "provisional, may still change"
    }


def test_candle_frame_reads_database_rows_and_live_payloads_alike() -> None:
    row = {k: v for k, v in payload(T0, "61607.99000000").items() if k not in ("kind", "open_time")}
    frame = candle_frame([payload(T0 + MINUTE, "2"), row])
    assert list(frame["time"]) == [T0, T0 + MINUTE] and str(frame["time"].dt.tz) == "UTC"
    assert frame["close_text"].tolist() == ["61607.99000000", "2"]


def test_indicator_columns_widen_one_label() -> None:
    import pandas as pd

    long = pd.DataFrame(
        {
            "time": pd.to_datetime([T0, T0, T0 + MINUTE, T0], utc=True),
            "indicator": ["bbands", "bbands", "bbands", "rsi"],
            "output": ["upperband", "lowerband", "upperband", "value"],
            "value": [2.0, 1.0, 3.0, 50.0],
        }
    )
    columns = indicator_columns(long, "bbands", ("upperband", "middleband", "lowerband"))
    assert columns["upperband"] == [2.0, 3.0] and columns["lowerband"][0] == 1.0
    assert all(v != v for v in columns["middleband"])  # missing output: NaN, drawn as a gap


def test_sort_live_keeps_new_candles_once_in_order_and_the_current_provisional() -> None:
    channels = series_channels("BTC-USDT", "1m")
    c, p = channels["candle"], channels["provisional"]
    msgs = [
        LiveMessage(c, payload(T0 + 2 * MINUTE, "3")),
        LiveMessage(c, payload(T0, "0")),
        LiveMessage(c, payload(T0 + MINUTE, "2")),
        LiveMessage(c, payload(T0 + MINUTE, "2")),
        LiveMessage(p, payload(T0 + 3 * MINUTE, "4.1", "provisional", as_of=T0 + 2 * MINUTE)),
        LiveMessage(p, payload(T0 + 3 * MINUTE, "4.0", "provisional", as_of=T0 + 2.5 * MINUTE)),
        LiveMessage(p, payload(T0 + 2 * MINUTE, "2.9", "provisional", as_of=T0 + 1.5 * MINUTE)),
        LiveMessage("tcp:candles:okx:ETH-USDT:1m", payload(T0 + 9 * MINUTE, "9")),
    ]
    batch = sort_live(msgs, channels, last_time=T0)
    assert list(batch.candles["time"]) == [T0 + MINUTE, T0 + 2 * MINUTE]  # deduplicated, sorted, newer only
    assert batch.provisional is not None and batch.provisional["close"] == Decimal("4.0")  # newest as_of
    # The final candle of the provisional's interval replaces it.
    done = sort_live(
        [LiveMessage(c, payload(T0 + 3 * MINUTE, "4"))], channels, T0 + 2 * MINUTE, batch.provisional
    )
    assert done.provisional is None and len(done.candles) == 1


def test_signal_marker_price_is_the_close_of_its_candle() -> None:
    assert price_at([1.0, 2.0, 3.0], [10.0, 20.0, 30.0], 2.0) == 20.0
    assert price_at([1.0, 3.0], [10.0, 30.0], 2.0) != price_at([1.0, 3.0], [10.0, 30.0], 2.0)  # NaN


def test_health_tables() -> None:
    h = {
        "collector": "okx",
        "time": T0,
        "status": "running",
        "is_healthy": False,
        "messages_received": 600,
        "uptime_seconds": 300.0,
        "last_message_time": T0 - timedelta(seconds=75),
        "reconnect_attempts": 2,
        "restarts": 0,
        "errors": 1,
        "issues": ["no message for 75 s (limit 60 s)"],
    }
    before = {**h, "time": T0 - timedelta(seconds=10), "messages_received": 500}
    assert message_rate(h, None) == 2.0 and message_rate(h, before) == 10.0
    state = CollectorState("okx", T0, "running", False, T0 - MINUTE, None, h)
    row = collector_rows([state], {"okx": before}, T0 + timedelta(seconds=30)).iloc[0]
    assert (row["healthy"], row["rate (msg/s)"], row["last message age (s)"]) == ("NO", 10.0, "105")
    assert row["issues"] == "no message for 75 s (limit 60 s)"
    assert row["status"] == "running since 00:04:00 UTC" and row["last error"] == "none"
    stale = collector_rows([state], {}, T0 + timedelta(seconds=31)).iloc[0]  # HEALTH_EXPIRES_AFTER: 30 s
    assert stale["status"] == "not reporting (last seen 00:05:00 UTC)" and stale["healthy"] == "unknown"
    gaps = gap_summary(
        [
            {"exchange": "okx", "symbol": "BTC-USDT", "filled": f, "trades_backfilled": n, "detected_at": T0}
            for f, n in ((True, 5), (False, 0), (True, 2))
        ]
    ).iloc[0]
    assert (gaps["gaps"], gaps["backfilled"], gaps["unfilled"], gaps["trades_backfilled"]) == (3, 2, 1, 7)
    late = count_table(
        [{"exchange": "okx", "symbol": "A", "late_trades": 2}] * 3, ["exchange", "symbol"], "late_trades"
    )
    assert late["late_trades"].tolist() == [6]


def test_live_queue_is_bounded_and_says_when_it_overflowed() -> None:
    queue = LiveQueue(frozenset({"x"}), maxlen=3)
    for i in range(5):
        queue.put(LiveMessage("x", {"i": i}))
    assert queue.overflowed and [m.payload["i"] for m in queue.drain()] == [2, 3, 4] and len(queue) == 0


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
    chart = CandleChart(data, ["BTC-USDT", "XRP-ETH"], CONFIG, max_rows=len(stored) + 3)
    source = chart.sources["candles"]
    assert source.data["close_text"] == [format(r["close"], "f") for r in stored]
    assert chart.indicators == ["ema_fast", "bbands", "rsi", "macd"]
    assert len(chart.sources["ema_fast"].data["time"]) == len(stored) - 2  # EMA(3) warm-up: 2 candles
    assert chart.waiting == ["macd"]  # too few candles for MACD: its panel waits for a value
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
    eventually(lambda: len(chart.queue or []) == 6)
    chart.poll_live()
    assert len(source.data["time"]) == len(stored) + 3  # rolled over: the oldest two dropped
    assert source.data["close_text"][-1] == "60005"
    assert chart.sources["provisional"].data["close_text"] == ["7"]
    assert 'data-testid="provisional-close">7<' in chart.summary.object

    chart.timeframe = "5m"  # a new series: history from the database again, live channels switched
    assert chart.sources["candles"].data["close_text"] == [format(r["close"], "f") for r in stored_5m]
    minute = {candle_channel("okx", "BTC-USDT", "1m"), provisional_channel("okx", "BTC-USDT", "1m")}
    assert chart.queue is not None and chart.queue.channels == frozenset(
        {*series_channels("BTC-USDT", "5m").values(), *minute}  # and its 1m parts, for the live candle
    )
    # The in-progress 5m candle, from its 1m parts: stored and live final 1m candles and the provisional.
    close = TIMEFRAMES["5m"].close_of(last + 5 * MINUTE)
    parts = {r["time"]: r["trade_count"] for r in stored if r["time"] > close - 5 * MINUTE}
    parts |= {last + i * MINUTE: 3 for i in range(1, 6) if last + i * MINUTE > close - 5 * MINUTE}
    shown = chart.sources["provisional"].data
    assert shown["close_text"] == ["7"] and shown["time"] == [close.timestamp() * 1000]
    assert shown["trade_count"] == [sum(parts.values()) + 1] and stored_5m[-1]["time"] < close
    assert "from its 1m candles" in chart.summary.object
    chart.close()
    assert data.live.sessions == 0


def test_chart_reloads_when_its_queue_overflowed(data: DashboardData, redis_url: str) -> None:
    chart = CandleChart(data, ["BTC-USDT"], CONFIG)
    n = len(chart.sources["candles"].data["time"])
    assert chart.queue is not None
    for _ in range(chart.queue.maxlen + 1):
        chart.queue.put(LiveMessage(candle_channel("okx", "BTC-USDT", "1m"), payload(T0, "1")))
    chart.poll_live()
    assert (
        not chart.queue.overflowed
        and len(chart.queue) == 0
        and len(chart.sources["candles"].data["time"]) == n
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
        chart = CandleChart(data, ["BTC-USDT"], CONFIG)
        assert chart.alert.visible and "database is unreachable" in chart.alert.object
        assert chart.sources["candles"].data["time"] == []
        chart.poll_live()
        assert "Redis is unreachable" in chart.summary.object and "Candles: 0" in chart.summary.object
        view = HealthView(data)
        assert "Database: unavailable: The database is unreachable" in view.status.object
        assert "Redis: unavailable: Redis is unreachable" in view.status.object
        assert "Traceback" not in view.status.object + chart.summary.object + chart.alert.object
    finally:
        data.close()


def test_provisional_channel_names_match_the_fan_out() -> None:
    assert series_channels("BTC-USDT", "1m") == {
        "candle": candle_channel("okx", "BTC-USDT", "1m"),
        "provisional": provisional_channel("okx", "BTC-USDT", "1m"),
        "indicator": "tcp:indicators:okx:BTC-USDT:1m",
        "signal": "tcp:signals:okx:BTC-USDT:1m",
    }


# -- the database alone, collector status, empty states ------------------------------------------------
def state(status: str, age: float, error: str | None = None) -> CollectorState:
    return CollectorState(
        "okx:public-0", T0 - timedelta(seconds=age), status, status == "running", T0 - MINUTE, error
    )


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (
            [state("reconnecting", 5, "gaierror: Name or service not known")],
            "No candles yet for BTC-USDT 1m. The OKX collector (okx:public-0) is reconnecting since "
            "00:04:00 UTC: gaierror: Name or service not known. It keeps retrying; "
            "`python3 tcp.py up --offline` runs against the bundled simulator.",
        ),
        (
            [state("running", 5)],
            "No candles yet for BTC-USDT 1m. The OKX collector is running; the first 1m "
            "candle closes at 00:06 UTC.",
        ),
        (
            [state("running", 31)],
            "No candles yet for BTC-USDT 1m. No collector is running: the collector "
            "okx:public-0 is not reporting (last seen 00:04:29 UTC). `python3 tcp.py up` starts",
        ),
        ([], "No candles yet for BTC-USDT 1m. No collector is reporting: `python3 tcp.py up` starts"),
        (
            [state("reconnecting", 5, "timeout"), replace(state("running", 5), collector="okx:business-0")],
            "No candles yet for BTC-USDT 1m. The OKX collector is running; the first 1m candle closes at",
        ),
    ],
)
def test_an_empty_chart_says_why(states: list[CollectorState], expected: str) -> None:
    assert empty_message("BTC-USDT", "1m", states, T0).startswith(expected)


def test_instrument_list_is_configured_first_then_stored() -> None:
    assert instrument_list(["BTC-USDT", "ETH-USDT"], ["XRP-ETH", "BTC-USDT", "ADA-USDT"]) == [
        "BTC-USDT",
        "ETH-USDT",
        "ADA-USDT",
        "XRP-ETH",
    ]


def test_in_progress_candle_of_a_higher_timeframe_from_its_1m_parts() -> None:
    minutes = [payload(T0 + i * MINUTE, c) for i, c in ((1, "10"), (2, "12"), (3, "9"))]  # 00:06 .. 00:08
    live = payload(T0 + 4 * MINUTE, "11", "provisional", as_of=T0 + 3.5 * MINUTE)
    candle = in_progress("5m", minutes, live)
    assert candle is not None and (candle["time"], candle["open_time"]) == (T0 + 5 * MINUTE, T0)
    assert (candle["open"], candle["high"], candle["low"], candle["close"]) == tuple(
        map(Decimal, "10 12 9 11".split())
    )
    assert candle["trade_count"] == 12 and candle["volume"] == Decimal(2) and candle["as_of"] == live["as_of"]
    assert in_progress("5m", minutes)["close"] == Decimal(9)  # type: ignore[index]  (database alone)
    assert in_progress("5m", [], None) is None
    parts = MinuteParts("5m")
    for m in minutes:
        parts.add("candle", m)
    parts.add("provisional", live)
    assert parts.candle(last_time=T0) == candle and parts.candle(last_time=T0 + 5 * MINUTE) is None
    parts.add("candle", payload(T0 + 6 * MINUTE, "13"))  # the next interval: older parts dropped
    assert parts.provisional is None and parts.candle(None)["open"] == Decimal(13)  # type: ignore[index]


def test_the_chart_runs_on_the_database_alone(filled: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = DashboardData.connect(filled, None)
    now = datetime.now(UTC)
    put_collector(
        filled, "okx:public-0", "reconnecting", now, now - MINUTE, "gaierror: Name or service not known"
    )
    try:
        assert data.db.symbols() == ["BTC-USDT"] and data.live.off_reason() == "REDIS_URL is not set"
        chart = CandleChart(data, instrument_list(["ETH-USDT"], data.db.symbols()), CONFIG, symbol="BTC-USDT")
        assert chart.param.symbol.objects == ["ETH-USDT", "BTC-USDT"]
        assert len(chart.sources["candles"].data["time"]) == 11 and not chart.notice.visible
        chart.poll_live()
        assert "Live: live updates off (REDIS_URL is not set)" in chart.summary.object
        last = datetime.fromtimestamp(chart.sources["candles"].data["time"][-1] / 1000, UTC)
        with psycopg.connect(filled, autocommit=True) as conn:  # as the flow stores the next candle
            conn.execute(
                "INSERT INTO candles_1m (exchange, symbol, time, open, high, low, close, volume,"
                " quote_volume, trade_count, vwap, first_trade_id, last_trade_id)"
                " VALUES ('okx', 'BTC-USDT', %s, 1, 2, 1, 2, 1, 2, 1, 2, 10000001, 10000001)",
                (last + MINUTE,),
            )
        monkeypatch.setattr(views, "CHECK_SECONDS", 0.0)
        chart.poll_live()  # without Redis the chart looks for newly stored candles
        assert (
            chart.sources["candles"].data["close_text"][-1] == "2" and "Candles: 12" in chart.summary.object
        )
        since = f"reconnecting since {now - MINUTE:%H:%M:%S} UTC: gaierror: Name or service not known"
        assert f"Collector okx:public-0: {since}." in chart.summary.object

        chart.symbol = "ETH-USDT"  # configured, never stored
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
        chart.close()
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
        chart = CandleChart(data, ["BTC-USDT"], CONFIG)

        def says_off() -> bool:
            chart.poll_live()
            return "Live: live updates off (Redis is unreachable" in chart.summary.object

        eventually(says_off)
        last = datetime.fromtimestamp(chart.sources["candles"].data["time"][-1] / 1000, UTC)
        assert server.start() == url
        eventually(lambda: data.live.status.connected)
        chart.poll_live()  # reloads (the subscription is new), then follows
        RedisFanout(url).publish([candle(last + MINUTE, "70000")])
        eventually(lambda: len(chart.queue or []) == 1)
        chart.poll_live()
        assert chart.sources["candles"].data["close_text"][-1] == "70000"
        assert "Live: following Redis" in chart.summary.object
        chart.close()
    finally:
        data.close()
        server.stop()


def test_a_chart_recovers_once_the_database_answers(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = DashboardData.connect(pg_url, None)
    try:
        chart = CandleChart(data, ["BTC-USDT"], CONFIG)
        assert chart.alert.visible and "no TCP schema yet" in chart.alert.object and not chart.notice.visible
        migrate(pg_url)
        run_replay([BTC_TAPE], database=DatabaseSink(pg_url, tmp_path / "spool"), indicators=CONFIG)
        monkeypatch.setattr(views, "CHECK_SECONDS", 0.0)
        chart.poll_live()
        assert not chart.alert.visible and len(chart.sources["candles"].data["time"]) == 11
        chart.close()
    finally:
        data.close()
