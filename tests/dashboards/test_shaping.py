"""The dashboard's pure logic: data shaping, live sorting, the in-progress candle of a higher timeframe,
the health tables, the collector sentences of an empty chart and the bounded live queue."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pandas as pd
import pytest

from connectors.redis_codec import candle_channel, provisional_channel
from connectors.redis_reader import LiveMessage
from dashboards.collectors import CollectorState, empty_message
from dashboards.data import LiveQueue, candle_frame, series_channels
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
from tests.dashboards.chart_kit import CONFIG, MINUTE, T0, payload


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
